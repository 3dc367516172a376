package wisp

// The end of a client's HTTP call: when the response body is done, not when RoundTrip
// returns. RoundTrip returns at the response's headers, and a server may deliver the body
// much later (a slow producer, Nagle's algorithm against a delayed ACK): ending the call
// there would hide the body's transfer in the caller's "running" time. So, like
// OpenTelemetry's otelhttp Transport, the call ends (rpc.response, with the status) when
// the body is read to its end or closed, whichever comes first, once; a read error ends it
// with -1. A body that is never read to its end nor closed leaves the call unanswered, as
// a reply that never came would (net/http asks callers to close every body).

import (
	"io"
	"net/http"
	"sync/atomic"
)

// respBody is a response body that ends its call when it is done: one small allocation per
// call with a body. (Kept apart from the call's rpcRec, which the flusher holds until it
// writes it: inside it, the body would live as long, and measured slower.)
type respBody struct {
	rc     io.ReadCloser // the transport's body
	call   Call
	status int
	// Invariant: false until the call is ended, then true for good; the first of a Read
	// that sees the end, a failed Read and Close swaps it (Close may race a Read on
	// another goroutine: net/http allows closing a body to abort a read).
	done atomic.Bool
}

func (b *respBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil {
		b.finish(err)
	}
	return n, err
}

// Close ends the call first (its reply is over when the program lets it go), then closes
// the transport's body.
func (b *respBody) Close() error {
	b.end(b.status)
	return b.rc.Close()
}

// finish ends the call after a read that returned err: the reply's end, or its failure.
func (b *respBody) finish(err error) {
	if err == io.EOF {
		b.end(b.status)
	} else {
		b.end(-1)
	}
}

func (b *respBody) end(status int) {
	if b.done.CompareAndSwap(false, true) {
		b.call.ClientEnd(status)
	}
}

// respBodyWriterTo keeps a body's io.WriterTo, which io.Copy prefers to Read: the
// standard transports' bodies have none, but a custom Base's may.
type respBodyWriterTo struct{ *respBody }

func (b respBodyWriterTo) WriteTo(w io.Writer) (int64, error) {
	n, err := b.rc.(io.WriterTo).WriteTo(w)
	if err != nil {
		b.end(-1)
	} else {
		b.end(b.status) // WriteTo returns nil at the end of the data
	}
	return n, err
}

// endWithBody ends c when resp's body is done (see above), or now when the response has
// no body to wait for: a HEAD request, 1xx (101 Switching Protocols hands the connection
// to the program: its body is the connection, an io.ReadWriteCloser, and must stay so),
// 204, 304, http.NoBody, or an announced length of 0.
func (c Call) endWithBody(req *http.Request, resp *http.Response) {
	if c.res == 0 {
		return
	}
	if bodiless(req, resp) {
		c.ClientEnd(resp.StatusCode)
		return
	}
	b := &respBody{rc: resp.Body, call: c, status: resp.StatusCode}
	if _, ok := resp.Body.(io.WriterTo); ok {
		resp.Body = respBodyWriterTo{b} // (a pointer-shaped value: no further allocation)
		return
	}
	resp.Body = b
}

func bodiless(req *http.Request, resp *http.Response) bool {
	s := resp.StatusCode
	return resp.Body == nil || resp.Body == http.NoBody || resp.ContentLength == 0 ||
		req.Method == http.MethodHead || (s >= 100 && s < 200) ||
		s == http.StatusNoContent || s == http.StatusNotModified
}
