package metrics_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/saslgate/saslgate/daemon/metrics"
)

func listen(t *testing.T, m *metrics.Metrics, addr string, logger *slog.Logger) *metrics.Endpoint {
	t.Helper()
	ep, err := m.Listen(addr, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = ep.Shutdown(ctx)
	})
	return ep
}

func get(t *testing.T, c *http.Client, method, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestEndpoint(t *testing.T) {
	m := metrics.New("9.9.9")
	var logs bytes.Buffer
	ep := listen(t, m, "127.0.0.1:0", slog.New(slog.NewTextHandler(&logs, nil)))
	if !strings.HasPrefix(ep.URL(), "http://127.0.0.1:") || !strings.HasSuffix(ep.URL(), "/metrics") {
		t.Errorf("URL %q", ep.URL())
	}
	c := &http.Client{Timeout: 10 * time.Second}
	code, body := get(t, c, "GET", ep.URL())
	if code != 200 || !strings.Contains(body, `saslgate_build_info{goversion="`) || !strings.Contains(body, `version="9.9.9"} 1`) ||
		!strings.Contains(body, "go_goroutines ") || !strings.Contains(body, "process_open_fds ") {
		t.Errorf("GET /metrics: %d\n%s", code, body)
	}
	base := strings.TrimSuffix(ep.URL(), "/metrics")
	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/", 404},
		{"GET", "/metrics/x", 404},
		{"GET", "/debug/pprof/", 404},
		{"POST", "/metrics", 405},
		{"HEAD", "/metrics", 200},
	} {
		if code, _ := get(t, c, tc.method, base+tc.path); code != tc.code {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, code, tc.code)
		}
	}
	if logs.Len() != 0 {
		t.Errorf("a loopback address logged: %s", logs.String())
	}

	srv := metrics.HTTPServer(ep)
	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 ||
		srv.MaxHeaderBytes <= 0 || srv.MaxHeaderBytes > 64<<10 {
		t.Errorf("unbounded server: %+v", srv)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ep.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if conn, err := net.DialTimeout("tcp", ep.Addr().String(), time.Second); err == nil {
		conn.Close()
		t.Error("still listening after Shutdown")
	}
}

func TestEndpoint_NotLoopbackWarns(t *testing.T) {
	var logs bytes.Buffer
	listen(t, metrics.New("x"), "0.0.0.0:0", slog.New(slog.NewTextHandler(&logs, nil)))
	if !strings.Contains(logs.String(), "not a loopback address") {
		t.Errorf("no warning: %q", logs.String())
	}
}

func TestEndpoint_BindErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct{ addr, want string }{
		{busy.Addr().String(), "address already in use"},
		{"127.0.0.1", "missing port"},
		{"192.0.2.1:0", "cannot assign requested address"}, // TEST-NET, not ours
	} {
		_, err := metrics.New("x").Listen(tc.addr, nil)
		if err == nil || !strings.HasPrefix(err.Error(), "metrics: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.addr, err, tc.want)
		}
	}
}

// blocker is a collector whose Collect waits for release.
type blocker struct {
	desc     *prometheus.Desc
	entered  chan struct{}
	release  chan struct{}
	released sync.Once
}

func (b *blocker) Describe(ch chan<- *prometheus.Desc) { ch <- b.desc }
func (b *blocker) Collect(ch chan<- prometheus.Metric) {
	b.entered <- struct{}{}
	<-b.release
	ch <- prometheus.MustNewConstMetric(b.desc, prometheus.GaugeValue, 1)
}

// TestEndpoint_MaxScrapes: beyond MaxScrapes at once, a scrape gets 503
// rather than another goroutine gathering.
func TestEndpoint_MaxScrapes(t *testing.T) {
	m := metrics.New("x")
	b := &blocker{desc: prometheus.NewDesc("test_block", "blocks", nil, nil),
		entered: make(chan struct{}, metrics.MaxScrapes+1), release: make(chan struct{})}
	m.Registry().MustRegister(b)
	ep := listen(t, m, "127.0.0.1:0", nil)
	defer b.released.Do(func() { close(b.release) })
	c := &http.Client{Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	for range metrics.MaxScrapes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, _ := get(t, c, "GET", ep.URL()); code != 200 {
				t.Errorf("held scrape: %d", code)
			}
		}()
	}
	for range metrics.MaxScrapes {
		<-b.entered
	}
	if code, body := get(t, c, "GET", ep.URL()); code != 503 || !strings.Contains(body, "Limit of concurrent requests") {
		t.Errorf("scrape beyond the bound: %d %q", code, body)
	}
	b.released.Do(func() { close(b.release) })
	wg.Wait()
	if code, _ := get(t, c, "GET", ep.URL()); code != 200 {
		t.Errorf("after the bound: %d", code)
	}
}

// TestEndpoint_MaxConns: beyond MaxConns open connections a client waits
// in the backlog until one closes.
func TestEndpoint_MaxConns(t *testing.T) {
	ep := listen(t, metrics.New("x"), "127.0.0.1:0", nil)
	var held []net.Conn
	for range metrics.MaxConns {
		c, err := net.Dial("tcp", ep.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	// the kernel completes the connection, the server does not take it
	short := &http.Client{Timeout: 300 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := short.Get(ep.URL()); err == nil {
		resp.Body.Close()
		t.Fatal("a connection beyond MaxConns was served")
	}
	held[0].Close()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	if code, _ := get(t, c, "GET", ep.URL()); code != 200 {
		t.Fatalf("after a slot freed: %d", code)
	}
}
