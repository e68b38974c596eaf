package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/saslgate/saslgate/daemon/stats"
)

// The endpoint's bounds: it has no authentication, so whoever reaches it
// must not be able to hold it or the daemon's memory.
const (
	// MaxScrapes is how many scrapes run at once; more get 503.
	MaxScrapes = 4
	// scrapeTimeout bounds gathering the metrics for one scrape.
	scrapeTimeout     = 10 * time.Second
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = scrapeTimeout + 5*time.Second
	idleTimeout       = time.Minute
	maxHeaderBytes    = 8 << 10
	// MaxConns is how many connections the endpoint holds open; more wait
	// in the listen backlog.
	MaxConns = 16
)

// Path is where the metrics are served.
const Path = "/metrics"

// Endpoint serves Path over HTTP on its own listener.
type Endpoint struct {
	srv      *http.Server
	ln       net.Listener
	done     chan struct{} // closed when Serve has returned serveErr
	serveErr error
}

// Handler serves the registry's metrics in the text or protobuf exposition
// format, at most MaxScrapes at once.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		MaxRequestsInFlight: MaxScrapes,
		Timeout:             scrapeTimeout,
		ErrorHandling:       promhttp.ContinueOnError,
	})
}

// Listen binds addr (host:port) now, so that a bad or busy address is a
// start-up error, and serves m's Handler at Path on it until Shutdown.
func (m *Metrics) Listen(addr string, logger *slog.Logger) (*Endpoint, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	stats.WarnIfExposed(logger, ln.Addr())
	return m.Serve(ln, logger), nil
}

// Serve serves m's Handler at Path on ln until Shutdown.
func (m *Metrics) Serve(ln net.Listener, logger *slog.Logger) *Endpoint {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ln = &limitListener{Listener: ln, sem: make(chan struct{}, MaxConns)}
	mux := http.NewServeMux()
	mux.Handle("GET "+Path, m.Handler())
	e := &Endpoint{
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: readHeaderTimeout,
			ReadTimeout:       readTimeout,
			WriteTimeout:      writeTimeout,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    maxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		},
		ln:   ln,
		done: make(chan struct{}),
	}
	go func() {
		e.serveErr = e.srv.Serve(ln)
		close(e.done)
	}()
	return e
}

// Addr is the address the endpoint listens on.
func (e *Endpoint) Addr() net.Addr { return e.ln.Addr() }

// URL is the metrics' address as a scraper would use it.
func (e *Endpoint) URL() string { return "http://" + e.ln.Addr().String() + Path }

// Shutdown stops accepting, lets scrapes in progress finish until ctx ends,
// then closes everything. A second call does nothing.
func (e *Endpoint) Shutdown(ctx context.Context) error {
	err := e.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, e.srv.Close())
	}
	<-e.done
	if !errors.Is(e.serveErr, http.ErrServerClosed) {
		err = errors.Join(err, e.serveErr)
	}
	if err != nil {
		return fmt.Errorf("metrics: shutdown: %w", err)
	}
	return nil
}

// limitListener holds at most cap(sem) connections open: beyond, clients
// wait in the backlog, so a flood of idle connections costs bounded memory.
type limitListener struct {
	net.Listener
	sem chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	l.sem <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
