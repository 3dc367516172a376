// Package wispgrpc records gRPC calls with the Willowisp Go agent and carries W3C trace
// context in gRPC metadata (traceparent, tracestate), as the Python agent does. It is its
// own module so that programs using only the agent or its net/http adapter do not depend
// on google.golang.org/grpc.
//
//	grpc.NewServer(grpc.UnaryInterceptor(wispgrpc.UnaryServerInterceptor()),
//	               grpc.StreamInterceptor(wispgrpc.StreamServerInterceptor()))
//	grpc.NewClient(addr, grpc.WithUnaryInterceptor(wispgrpc.UnaryClientInterceptor()),
//	               grpc.WithStreamInterceptor(wispgrpc.StreamClientInterceptor()), ...)
//
// A client call is msg.send, unit.block (rpc) and rpc.response (arg: the gRPC status code,
// -1 when the call failed before a status); a server call is msg.recv and rpc.reply, on an
// rpc resource with protocol "grpc", library "grpc-go", method and target the full method
// name. For streams the response is recorded when the client sees the stream's end or
// error, and the reply when the server's handler returns.
package wispgrpc

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/willowisp/willowisp/agents/go/wisp"
)

// outgoing adds the trace context to the call's metadata and begins the client side.
func outgoing(ctx context.Context, method, target string) (context.Context, wisp.Call) {
	if !wisp.Running() {
		return ctx, wisp.Call{}
	}
	md, _ := metadata.FromOutgoingContext(ctx)
	if vs := md.Get("traceparent"); len(vs) > 0 {
		if tc, ok := wisp.ParseTraceparent(vs[0]); ok {
			return ctx, wisp.ClientBegin(ctx, tc, hop(method, target))
		}
	}
	tc := wisp.Outgoing(ctx)
	kv := []string{"traceparent", tc.Header()}
	if tc.State != "" {
		kv = append(kv, "tracestate", tc.State)
	}
	ctx = metadata.AppendToOutgoingContext(ctx, kv...)
	return ctx, wisp.ClientBegin(ctx, tc, hop(method, target))
}

func hop(method, peerAddr string) wisp.Hop {
	return wisp.Hop{Name: method, Protocol: "grpc", Library: "grpc-go", Method: method, Target: method, Peer: peerAddr}
}

func code(err error) int {
	if err == nil {
		return int(codes.OK)
	}
	if s, ok := status.FromError(err); ok {
		return int(s.Code())
	}
	return -1
}

// UnaryClientInterceptor records unary calls and propagates the trace context.
func UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		ctx, call := outgoing(ctx, method, cc.Target())
		err := invoker(ctx, method, req, reply, cc, opts...)
		call.ClientEnd(code(err))
		return err
	}
}

// StreamClientInterceptor records streaming calls and propagates the trace context.
func StreamClientInterceptor() grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		ctx, call := outgoing(ctx, method, cc.Target())
		s, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			call.ClientEnd(code(err))
			return nil, err
		}
		return &clientStream{ClientStream: s, call: call}, nil
	}
}

type clientStream struct {
	grpc.ClientStream
	call  wisp.Call
	ended bool
}

func (s *clientStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil && !s.ended {
		s.ended = true
		if errors.Is(err, io.EOF) {
			s.call.ClientEnd(int(codes.OK))
		} else {
			s.call.ClientEnd(code(err))
		}
	}
	return err
}

// incoming extracts the caller's context and begins the server side.
func incoming(ctx context.Context, method string) (context.Context, wisp.Call) {
	if !wisp.Running() {
		return ctx, wisp.Call{}
	}
	md, _ := metadata.FromIncomingContext(ctx)
	var parent wisp.TraceContext
	had := false
	if vs := md.Get("traceparent"); len(vs) > 0 {
		parent, had = wisp.ParseTraceparent(vs[0])
		if had {
			if st := md.Get("tracestate"); len(st) > 0 {
				parent.State = st[0]
			}
		}
	}
	own := wisp.ServerContext(parent, had)
	ctx = wisp.WithTraceContext(ctx, own)
	addr := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		addr = p.Addr.String()
	}
	call := wisp.ServerBegin(ctx, parent, had, own, hop(method, addr))
	// A request that opened a boundary instance: the handler runs with its context.
	return call.Context(ctx), call
}

// UnaryServerInterceptor records unary requests and puts their trace context into the
// handler's context (so calls it makes through the client interceptors continue it).
func UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, call := incoming(ctx, info.FullMethod)
		resp, err := handler(ctx, req)
		call.ServerEnd(code(err))
		return resp, err
	}
}

// StreamServerInterceptor records streaming requests.
func StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, call := incoming(ss.Context(), info.FullMethod)
		err := handler(srv, &serverStream{ServerStream: ss, ctx: ctx})
		call.ServerEnd(code(err))
		return err
	}
}

type serverStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *serverStream) Context() context.Context { return s.ctx }
