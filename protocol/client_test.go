package protocol_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/saslgate/saslgate/protocol"
)

func TestReadReply(t *testing.T) {
	long := rep("x", 2000)
	tests := []struct {
		name    string
		in      []byte
		want    string
		wantErr error
	}{
		{name: "OK", in: []byte("\x00\x02OK"), want: "OK"},
		{name: "NO with trailing space", in: []byte("\x00\x03NO "), want: "NO "},
		{name: "reason", in: []byte("\x00\x15NO Incorrect password"), want: "NO Incorrect password"},
		{name: "bytes after the reply are left alone", in: []byte("\x00\x02OKjunk"), want: "OK"},
		{name: "MaxReply", in: cat(hdr(1023), []byte(long[:1023])), want: long[:1023]},
		{name: "over MaxReply is cut", in: cat(hdr(2000), []byte(long)), want: long[:1023]},
		{name: "over MaxReply, only MaxReply sent", in: cat(hdr(0xFFFF), []byte(long[:1023])), want: long[:1023]},
		{name: "length 0", in: []byte("\x00\x00"), wantErr: protocol.ErrBadResponse},
		{name: "length 1", in: []byte("\x00\x01N"), wantErr: protocol.ErrBadResponse},
		{name: "length 1, no body", in: []byte("\x00\x01"), wantErr: protocol.ErrBadResponse},
		{name: "empty", in: nil, wantErr: protocol.ErrSizeRead},
		{name: "one header byte", in: []byte{0}, wantErr: protocol.ErrSizeRead},
		{name: "header only", in: []byte("\x00\x02"), wantErr: protocol.ErrRead},
		{name: "short body", in: []byte("\x00\x15NO Incorrect"), wantErr: protocol.ErrRead},
		{name: "over MaxReply, short body", in: cat(hdr(2000), []byte(long[:1022])), wantErr: protocol.ErrRead},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := protocol.ReadReply(bytes.NewReader(tc.in))
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("reply = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestReadReply_ReadErrorWrapped(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name string
		r    io.Reader
		want error
	}{
		{name: "in header", r: io.MultiReader(bytes.NewReader([]byte{0}), errReader{boom}), want: protocol.ErrSizeRead},
		{name: "in body", r: io.MultiReader(bytes.NewReader([]byte("\x00\x02O")), errReader{boom}), want: protocol.ErrRead},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := protocol.ReadReply(tc.r)
			if !errors.Is(err, tc.want) || !errors.Is(err, boom) {
				t.Errorf("err = %v, want %v wrapping %v", err, tc.want, boom)
			}
		})
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// fakeServer is a tiny saslauthd stand-in on a unix socket. For each
// connection it reads once (a client that writes the request in one write
// delivers it in one read), records the bytes, and answers with reply
// (raw wire bytes; nil for no answer), then closes unless hang is set.
type fakeServer struct {
	path string
	got  chan []byte
}

func newFakeServer(t *testing.T, reply []byte, hang bool) *fakeServer {
	t.Helper()
	ln, err := net.Listen("unix", sockPath(t))
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{path: ln.Addr().String(), got: make(chan []byte, 16)}
	done := make(chan struct{})
	var conns []net.Conn
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			buf := make([]byte, 64<<10)
			n, _ := c.Read(buf)
			s.got <- buf[:n]
			if reply != nil {
				c.Write(reply)
			}
			if !hang {
				c.Close()
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return s
}

func TestClient_Do(t *testing.T) {
	long := rep("x", 2000)
	tests := []struct {
		name      string
		req       protocol.Request
		reply     []byte
		want      string
		wantErr   error
		wantBytes bool // check the request bytes the server received
	}{
		{
			name:  "case 1: OK",
			req:   protocol.Request{Login: "u1", Password: "Secret123", Service: "smtp"},
			reply: []byte("\x00\x02OK"),
			want:  "OK", wantBytes: true,
		},
		{
			name:  "case 2: NO with reason",
			req:   protocol.Request{Login: "u1", Password: "wrong", Service: "smtp"},
			reply: []byte("\x00\x15NO Incorrect password"),
			want:  "NO Incorrect password", wantBytes: true,
		},
		{
			name:  "case 18: five fields",
			req:   protocol.Request{Login: "u1", Password: "Secret123", Service: "smtp", ClientAddr: "192.0.2.7;41234", HasClientAddr: true},
			reply: []byte("\x00\x02OK"),
			want:  "OK", wantBytes: true,
		},
		{
			name:  "256-byte fields",
			req:   protocol.Request{Login: a256, Password: a256, Service: a256, Realm: a256, ClientAddr: a256, HasClientAddr: true},
			reply: []byte("\x00\x02OK"),
			want:  "OK", wantBytes: true,
		},
		{
			name:  "oversize fields are sent, as libsasl sends them",
			req:   protocol.Request{Login: "u1", Password: rep("p", 4000), Service: "smtp"},
			reply: []byte("\x00\x03NO "),
			want:  "NO ", wantBytes: true,
		},
		{
			name:  "NULs sent as given",
			req:   protocol.Request{Login: "\x00u1", Password: "Secret123\x00junk", Service: "smtp"},
			reply: []byte("\x00\x16NO NULL login received"),
			want:  "NO NULL login received", wantBytes: true,
		},
		{
			name:  "long reply cut to MaxReply",
			req:   protocol.Request{Login: "u1", Password: "p"},
			reply: cat(hdr(2000), []byte(long)),
			want:  long[:protocol.MaxReply],
		},
		{
			name:    "case 13: no reply, connection closed",
			req:     protocol.Request{Login: "u1", Password: "p"},
			reply:   nil,
			wantErr: protocol.ErrSizeRead,
		},
		{
			name:    "length under 2",
			req:     protocol.Request{Login: "u1", Password: "p"},
			reply:   []byte("\x00\x01O"),
			wantErr: protocol.ErrBadResponse,
		},
		{
			name:    "short reply body",
			req:     protocol.Request{Login: "u1", Password: "p"},
			reply:   []byte("\x00\x10NO Inc"),
			wantErr: protocol.ErrRead,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeServer(t, tc.reply, false)
			c := &protocol.Client{Path: srv.path, Timeout: 10 * guard}
			type result struct {
				reply string
				err   error
			}
			res := within(t, guard, "Client.Do", func() result {
				reply, err := c.Do(t.Context(), tc.req)
				return result{reply, err}
			})
			if !errors.Is(res.err, tc.wantErr) || (tc.wantErr == nil && res.err != nil) {
				t.Fatalf("err = %v, want %v", res.err, tc.wantErr)
			}
			if res.reply != tc.want {
				t.Errorf("reply = %q, want %q", res.reply, tc.want)
			}
			got := <-srv.got
			if tc.wantBytes {
				want, err := protocol.AppendRequest(nil, tc.req)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("server's single read got %d bytes %q, want AppendRequest's %d bytes %q", len(got), got, len(want), want)
				}
			}
		})
	}
}

// TestClient_DoRoundTrip drives the package's own server half with its
// client over a real socket, in the order of spec §2.2.
func TestClient_DoRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		req  protocol.Request
		want string
	}{
		{
			name: "OK",
			req:  protocol.Request{Login: "u1", Password: "Secret123", Service: "smtp", Realm: "example.com"},
			want: "OK",
		},
		{
			name: "five fields",
			req:  protocol.Request{Login: "u1", Password: "Secret123", Service: "smtp", ClientAddr: "192.0.2.7;41234", HasClientAddr: true},
			want: "OK",
		},
		{name: "too long", req: protocol.Request{Login: "u1", Password: a257}, want: protocol.ReplyTooLong},
		{name: "null login", req: protocol.Request{Password: "x", Service: "smtp"}, want: protocol.ReplyNullLogin},
		{name: "null password", req: protocol.Request{Login: "u1", Service: "smtp"}, want: protocol.ReplyNullPasswd},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("unix", sockPath(t))
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			type served struct {
				req     protocol.Request
				readErr error
				drained int64
				drain   error
			}
			done := make(chan served, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					done <- served{readErr: err}
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * guard))
				r := protocol.NewReader(c)
				req, err := r.ReadRequest()
				var fe *protocol.FieldTooLongError
				switch {
				case errors.As(err, &fe):
					protocol.WriteReply(c, protocol.ReplyTooLong)
				case errors.Is(err, protocol.ErrNullLogin):
					protocol.WriteReply(c, protocol.ReplyNullLogin)
				case errors.Is(err, protocol.ErrNullPassword):
					protocol.WriteReply(c, protocol.ReplyNullPasswd)
				case err == nil:
					protocol.WriteReply(c, "OK")
				}
				c.(*net.UnixConn).CloseWrite()
				n, derr := r.Drain(1 << 20)
				done <- served{req: req, readErr: err, drained: n, drain: derr}
			}()

			c := &protocol.Client{Path: ln.Addr().String(), Timeout: 10 * guard}
			type result struct {
				reply string
				err   error
			}
			res := within(t, guard, "Client.Do", func() result {
				reply, err := c.Do(t.Context(), tc.req)
				return result{reply, err}
			})
			if res.err != nil || res.reply != tc.want {
				t.Errorf("Do = %q, %v; want %q", res.reply, res.err, tc.want)
			}
			s := within(t, guard, "server", func() served { return <-done })
			if s.drain != nil {
				t.Errorf("server Drain after the client closed: %v", s.drain)
			}
			if s.readErr == nil && (s.req.Login != tc.req.Login || s.req.Password != tc.req.Password ||
				s.req.ClientAddr != tc.req.ClientAddr || s.req.HasClientAddr != tc.req.HasClientAddr) {
				t.Errorf("server read a different request")
			}
		})
	}
}

func TestClient_ConnectError(t *testing.T) {
	dir := filepath.Dir(sockPath(t))

	// A socket file with nobody listening.
	stale := filepath.Join(dir, "stale")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()

	// A regular file.
	regular := filepath.Join(dir, "regular")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		path    string
		want    string // exact Error(), or "" for prefix check only
		wantErr error
	}{
		{
			name:    "case 53: missing socket",
			path:    filepath.Join(dir, "missing"),
			want:    "connect() : No such file or directory",
			wantErr: fs.ErrNotExist,
		},
		{
			name:    "missing directory",
			path:    filepath.Join(dir, "nodir", "mux"),
			want:    "connect() : No such file or directory",
			wantErr: syscall.ENOENT,
		},
		{
			name:    "nobody listening",
			path:    stale,
			want:    "connect() : Connection refused",
			wantErr: syscall.ECONNREFUSED,
		},
		{
			name:    "not a socket",
			path:    regular,
			want:    "connect() : Connection refused",
			wantErr: syscall.ECONNREFUSED,
		},
		{
			// Spec §2.10 item 1: saslauthd_path naming the run directory.
			name: "case 54: the run directory",
			path: dir,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &protocol.Client{Path: tc.path, Timeout: guard}
			reply, err := c.Do(t.Context(), protocol.Request{Login: "u1", Password: "p"})
			if reply != "" {
				t.Errorf("reply = %q", reply)
			}
			var ce *protocol.ConnectError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v (%T), want *ConnectError", err, err)
			}
			if tc.want != "" && err.Error() != tc.want {
				t.Errorf("Error() = %q, want %q", err.Error(), tc.want)
			}
			if !strings.HasPrefix(err.Error(), "connect() : ") || strings.Contains(err.Error(), "dial") {
				t.Errorf("Error() = %q, want testsaslauthd's wording", err.Error())
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("errors.Is(%v, %v) = false", err, tc.wantErr)
			}
		})
	}
}

// TestClient_Timeout: a server that accepts and never answers (case 15 from
// the client's side) is bounded by Client.Timeout, or by the context.
func TestClient_Timeout(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration
		ctx     func(context.Context) (context.Context, context.CancelFunc)
	}{
		{
			name:    "Client.Timeout",
			timeout: 100 * time.Millisecond,
			ctx:     func(ctx context.Context) (context.Context, context.CancelFunc) { return ctx, func() {} },
		},
		{
			name: "context deadline",
			ctx: func(ctx context.Context) (context.Context, context.CancelFunc) {
				return context.WithTimeout(ctx, 100*time.Millisecond)
			},
		},
		{
			name: "context cancel",
			ctx: func(ctx context.Context) (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(ctx)
				time.AfterFunc(100*time.Millisecond, cancel)
				return ctx, cancel
			},
		},
		{
			name:    "Timeout shorter than context",
			timeout: 100 * time.Millisecond,
			ctx: func(ctx context.Context) (context.Context, context.CancelFunc) {
				return context.WithTimeout(ctx, time.Hour)
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeServer(t, nil, true)
			c := &protocol.Client{Path: srv.path, Timeout: tc.timeout}
			ctx, cancel := tc.ctx(t.Context())
			defer cancel()
			err := within(t, guard, "Client.Do against a silent server", func() error {
				_, err := c.Do(ctx, protocol.Request{Login: "u1", Password: "p"})
				return err
			})
			if !errors.Is(err, protocol.ErrSizeRead) {
				t.Errorf("err = %v, want ErrSizeRead", err)
			}
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("err = %v, want it to wrap os.ErrDeadlineExceeded", err)
			}
		})
	}
}

// TestClient_TimeoutReplyStalls: the server sends the header and part of
// the body, then stalls.
func TestClient_TimeoutReplyStalls(t *testing.T) {
	srv := newFakeServer(t, []byte("\x00\x15NO Inc"), true)
	c := &protocol.Client{Path: srv.path, Timeout: 100 * time.Millisecond}
	err := within(t, guard, "Client.Do", func() error {
		_, err := c.Do(t.Context(), protocol.Request{Login: "u1", Password: "p"})
		return err
	})
	if !errors.Is(err, protocol.ErrRead) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("err = %v, want ErrRead wrapping a deadline error", err)
	}
}

type rw struct {
	io.Reader
	io.Writer
}

type errWriter struct{ err error }

func (w errWriter) Write([]byte) (int, error) { return 0, w.err }

func TestExchange(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		req     protocol.Request
		reply   string
		w       io.Writer
		want    string
		wantErr []error
	}{
		{
			name:  "OK",
			req:   protocol.Request{Login: "u1", Password: "Secret123", Service: "smtp"},
			reply: "\x00\x02OK",
			want:  "OK",
		},
		{
			name:    "write error",
			req:     protocol.Request{Login: "u1", Password: "p"},
			w:       errWriter{boom},
			wantErr: []error{protocol.ErrWrite, boom},
		},
		{
			name:    "field too long for the wire",
			req:     protocol.Request{Login: "u1", Password: rep("p", 0x10000)},
			wantErr: []error{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var sent bytes.Buffer
			w := tc.w
			if w == nil {
				w = &sent
			}
			got, err := protocol.Exchange(rw{strings.NewReader(tc.reply), w}, tc.req)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatal("no error")
				}
				for _, e := range tc.wantErr {
					if !errors.Is(err, e) {
						t.Errorf("err = %v, want it to wrap %v", err, e)
					}
				}
				if sent.Len() != 0 {
					t.Errorf("sent %d bytes despite the error", sent.Len())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("reply = %q, want %q", got, tc.want)
			}
			want, _ := protocol.AppendRequest(nil, tc.req)
			if !bytes.Equal(sent.Bytes(), want) {
				t.Errorf("sent %q, want %q", sent.Bytes(), want)
			}
		})
	}
}
