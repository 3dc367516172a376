package wispgrpc

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/willowisp/willowisp/agents/go/wisp"
)

// seen records the traceparent each request arrived with (a health server wrapped so the
// test can look at the metadata the interceptor sent).
type seen struct {
	healthpb.HealthServer
	tp chan string
}

func (s seen) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	tc, _ := wisp.FromContext(ctx)
	s.tp <- strings.Join(md.Get("traceparent"), ",") + " " + tc.TraceID
	return s.HealthServer.Check(ctx, req)
}

// A unary call over a real loopback connection carries traceparent in metadata; the server
// continues the caller's trace, and the segment holds both sides' rpc resources.
func TestUnaryCallPropagatesAndRecords(t *testing.T) {
	dir := t.TempDir()
	if err := wisp.Start(wisp.Config{Out: dir, Service: "grpc-test", NoSignals: true}); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(UnaryServerInterceptor()), grpc.StreamInterceptor(StreamServerInterceptor()))
	s := seen{health.NewServer(), make(chan string, 1)}
	healthpb.RegisterHealthServer(srv, s)
	go srv.Serve(lis)
	defer srv.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(UnaryClientInterceptor()),
		grpc.WithStreamInterceptor(StreamClientInterceptor()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	got := <-s.tp
	wisp.Stop()
	header, serverTrace, _ := strings.Cut(got, " ")
	tc, ok := wisp.ParseTraceparent(header)
	if !ok || tc.TraceID != serverTrace {
		t.Fatalf("server saw %q", got)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.wtrace"))
	if len(files) != 1 {
		t.Fatalf("%d segments", len(files))
	}
	data, _ := os.ReadFile(files[0])
	// Codec none (the zero Config): the chunk's string table is readable as is.
	for _, want := range []string{"grpc-go", "/grpc.health.v1.Health/Check", tc.SpanID, tc.TraceID, "parent_span_id"} {
		if !strings.Contains(string(data), want) {
			t.Fatalf("segment lacks %q", want)
		}
	}
}

// states records the tracestate each request arrived with and the one a call made in the
// handler would carry on.
type states struct {
	healthpb.HealthServer
	got chan [2]string
}

func (s states) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	s.got <- [2]string{strings.Join(md.Get("tracestate"), ","), wisp.Outgoing(ctx).State}
	return s.HealthServer.Check(ctx, req)
}

// Boundaries cross gRPC: a call made inside an HTTP instance carries wisp=b-<id> in its
// metadata, and the gRPC server whose method is a boundary's entry opens an instance of
// that one (calls from its handler carry it on).
func TestBoundaryMemberCrossesGRPC(t *testing.T) {
	httpB, _ := wisp.ParseBoundary("entry=http:GET /in", "test")
	grpcB, _ := wisp.ParseBoundary("entry=grpc:/grpc.health.v1.Health/Check", "test")
	dir := t.TempDir()
	if err := wisp.Start(wisp.Config{Out: dir, Service: "grpc-test", NoSignals: true, Control: "off", Mode: "hops",
		Boundaries: httpB.Spec + "|" + grpcB.Spec}); err != nil {
		t.Fatal(err)
	}
	defer wisp.Stop()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(UnaryServerInterceptor()))
	s := states{health.NewServer(), make(chan [2]string, 1)}
	healthpb.RegisterHealthServer(srv, s)
	go srv.Serve(lis)
	defer srv.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(UnaryClientInterceptor()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	front := httptest.NewServer(wisp.Handler(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, err := healthpb.NewHealthClient(conn).Check(req.Context(), &healthpb.HealthCheckRequest{})
		if err != nil {
			w.WriteHeader(500)
		}
	})))
	defer front.Close()
	resp, err := http.Get(front.URL + "/in")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	resp.Body.Close()
	got := <-s.got
	if !strings.HasPrefix(got[0], "wisp=b-"+httpB.ID()) || !strings.HasPrefix(got[1], "wisp=b-"+grpcB.ID()) {
		t.Fatalf("tracestate in %q, carried on %q", got[0], got[1])
	}
}
