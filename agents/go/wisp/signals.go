package wisp

// SIGTERM and SIGINT: Go has no exit hook, so a signal that would end the program is
// caught, the agent stopped (its last events and the tracer's last bytes written), and the
// signal raised again with its default action, so the program ends as it would have.
// Caveat (docs/agent-go.md): a program that handles these signals itself for a graceful
// shutdown should set Config.NoSignals and call wisp.Stop at the end of its shutdown.

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
)

var signalOnce sync.Once

func watchSignals() {
	signalOnce.Do(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
		go func() {
			sig := <-ch
			Stop()
			signal.Reset(sig)
			if s, ok := sig.(syscall.Signal); ok {
				_ = syscall.Kill(os.Getpid(), s)
			}
		}()
	})
}
