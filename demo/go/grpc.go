package main

// The shop reserves stock over gRPC (the demo's one gRPC hop): a unary method
// /demo.Inventory/Reserve whose request and reply are plain bytes (the order number, then
// "reserved N"), served without generated stubs through a codec that passes bytes as they
// are. wispgrpc's interceptor records the call and continues the shop's trace from the
// traceparent in the metadata.

import (
	"context"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"

	"github.com/willowisp/willowisp/agents/go/wispgrpc"
)

// rawCodec sends and receives messages as the bytes they are.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("raw codec: %T is not *[]byte", v)
	}
	return *b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("raw codec: %T is not *[]byte", v)
	}
	*b = append((*b)[:0], data...)
	return nil
}

func (rawCodec) Name() string { return "proto" } // what grpcio clients send by default

var _ encoding.Codec = rawCodec{}

type inventoryServer interface{}

func reserveHandler(_ any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
	var order []byte
	if err := dec(&order); err != nil {
		return nil, err
	}
	handle := func(ctx context.Context, req any) (any, error) {
		inventory.Lock()
		stock["sku-1"]--
		inventory.Unlock()
		reply := []byte("reserved " + string(*req.(*[]byte)))
		return &reply, nil
	}
	info := &grpc.UnaryServerInfo{FullMethod: "/demo.Inventory/Reserve"}
	return icpt(ctx, &order, info, handle)
}

var inventoryService = grpc.ServiceDesc{
	ServiceName: "demo.Inventory",
	HandlerType: (*inventoryServer)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Reserve", Handler: reserveHandler}},
	Metadata:    "inventory.proto",
}

// serveGRPC listens on a loopback port, says "GRPC <port>" and serves Reserve.
func serveGRPC() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	server := grpc.NewServer(
		grpc.ForceServerCodec(rawCodec{}), //nolint:staticcheck // the plain-bytes codec is the point
		grpc.UnaryInterceptor(wispgrpc.UnaryServerInterceptor()),
	)
	server.RegisterService(&inventoryService, struct{}{})
	say(fmt.Sprintf("GRPC %d", ln.Addr().(*net.TCPAddr).Port))
	return server.Serve(ln)
}
