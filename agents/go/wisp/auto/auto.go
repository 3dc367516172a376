// Package auto starts the Willowisp agent from the environment when it is imported:
//
//	import _ "github.com/willowisp/willowisp/agents/go/wisp/auto"
//
// It reads the WILLOWISP_* variables that `willowisp run` sets (docs/agent-go.md) and
// starts recording when WILLOWISP_OUT names a run folder (and WILLOWISP_DISABLED is not
// set). A bad variable or an unwritable folder never stops the program: the agent stays
// off and says why in one line on standard error. Call wisp.Stop (e.g. deferred in main)
// for a clean end; without it the periodic flush bounds what an exit loses to one interval
// of the agent's own events, and the execution tracer's stream stays unfinished.
package auto

import (
	"errors"
	"fmt"
	"os"

	"github.com/willowisp/willowisp/agents/go/wisp"
)

func init() {
	defer func() {
		if p := recover(); p != nil {
			fmt.Fprintf(os.Stderr, "willowisp: Go agent disabled: %v\n", p)
		}
	}()
	cfg, err := wisp.ConfigFromEnv()
	if errors.Is(err, wisp.ErrNotConfigured) {
		return
	}
	if err == nil {
		err = wisp.Start(cfg)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "willowisp: Go agent disabled: %v\n", err)
	}
}
