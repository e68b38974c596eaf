// Package protocol is saslauthd's "mux" socket wire format, and nothing
// else: the request reader and reply writer a server uses, and a client.
//
// The format is that of Cyrus SASL 2.1.28 (saslauthd/ipc_unix.c,
// lib/checkpw.c) as written down in docs/saslauthd-spec.md §2: a request is
// four counted strings (login, password, service, realm), each a 2-byte
// big-endian length and that many bytes, optionally followed by a fifth
// (the client address, "ip;port", sent by the unreleased master branch). The
// reply is one counted string starting with "OK" or "NO". One request per
// connection.
//
// This package imports the standard library only.
package protocol

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"syscall"
	"unsafe"
)

// MaxField is saslauthd's MAX_REQ_LEN: a field may be 256 bytes, not 257.
const MaxField = 256

// MaxReply bounds the replies this package writes and reads; libsasl reads at
// most 1023 bytes of a reply.
const MaxReply = 1023

// Replies the protocol layer itself produces (spec §2.6), byte for byte.
const (
	ReplyTooLong    = "NO " // a field over MaxField; the trailing space is saslauthd's
	ReplyNullLogin  = "NO NULL login received"
	ReplyNullPasswd = "NO NULL password received"
)

// Field names, in wire order, for error messages and logs.
var fieldNames = [...]string{"login", "password", "service", "realm", "client_addr"}

// FieldTooLongError reports a length header over MaxField. The server
// answers ReplyTooLong and reads no further.
type FieldTooLongError struct {
	Field  string
	Length int
}

func (e *FieldTooLongError) Error() string {
	// saslauthd logs "<field> exceeded MAX_REQ_LEN: 256"
	return fmt.Sprintf("protocol: %s exceeded MAX_REQ_LEN: %d (length %d)", e.Field, MaxField, e.Length)
}

// ErrTruncated means the client stopped (EOF) inside the request. saslauthd
// sends no reply and closes.
var ErrTruncated = errors.New("protocol: request truncated")

// ErrNullLogin and ErrNullPassword are the empty-field errors, checked after
// all four fields were read (a too-long field wins over an empty one).
var (
	ErrNullLogin    = errors.New("protocol: NULL login received")
	ErrNullPassword = errors.New("protocol: NULL password received")
)

// Request is one request as read from the wire.
//
// Each field is cut at its first NUL byte, as saslauthd does (it copies each
// field into a C string): login "\x00alice" is empty, password
// "good\x00junk" is "good". Clients that use strlen cannot send a NUL, so
// only raw clients see the difference; matching saslauthd keeps answers
// byte-identical. The cut also means no back end ever receives a NUL.
type Request struct {
	Login    string
	Password string `json:"-"`
	Service  string
	Realm    string
	// ClientAddr is the fifth field, "ip;port".
	ClientAddr string
	// HasClientAddr is true when the client sent the fifth field (possibly
	// empty).
	HasClientAddr bool
}

// GoString, String, Format and LogValue keep the password out of any
// printed or logged Request.
func (r Request) GoString() string {
	return fmt.Sprintf("protocol.Request{Login:%q, Password:REDACTED, Service:%q, Realm:%q, ClientAddr:%q}",
		r.Login, r.Service, r.Realm, r.ClientAddr)
}

func (r Request) String() string { return r.GoString() }

// Format prints the redacted form for every verb.
func (r Request) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = io.WriteString(f, r.GoString())
		return
	}
	_, _ = fmt.Fprintf(f, fmt.FormatString(f, verb), r.String())
}

// LogValue keeps the password out of structured logs.
func (r Request) LogValue() slog.Value { return slog.StringValue(r.String()) }

// Reader reads requests from one connection. It buffers, so after
// ReadRequest the connection's remaining bytes (a second request, garbage)
// are partly inside the Reader; Drain discards them.
type Reader struct {
	br      *bufio.Reader
	conn    io.Reader
	drained bool // the queued bytes were all the socket had
}

// NewReader returns a Reader on r. When r is a socket (it implements
// syscall.Conn), the optional fifth field is read only if its bytes are
// already queued in the kernel; it never blocks waiting for one.
func NewReader(r io.Reader) *Reader {
	return NewReaderQueued(r, nil, false)
}

// NewReaderQueued returns a Reader on r that first reads queued, the
// bytes the caller already read from r (at most 4 KiB): an acceptor that
// read a request to see whether it can answer at once hands it on so.
// drained says that queued was all r had when it was read: the optional
// fifth field is then taken from queued alone, without a look at the
// socket (a client sends its request in one write).
func NewReaderQueued(r io.Reader, queued []byte, drained bool) *Reader {
	rd := &Reader{}
	rd.Reset(r, queued, drained)
	return rd
}

// Reset makes rd read the next connection as NewReaderQueued would, and
// keeps its buffer.
func (rd *Reader) Reset(r io.Reader, queued []byte, drained bool) {
	src := r
	if len(queued) > 0 {
		// queued fits the buffer, so its first fill takes all of it and
		// Buffered stays exact for queued() and Settled().
		src = io.MultiReader(bytes.NewReader(queued), r)
	}
	if rd.br == nil {
		// 4 KiB holds any request a real client sends (libsasl caps them
		// near 8 KiB but saslauthd refuses fields over 256 bytes anyway):
		// one read(2) usually takes the whole request, fifth field included.
		rd.br = bufio.NewReaderSize(src, 4096)
	} else {
		rd.br.Reset(src)
	}
	rd.conn, rd.drained = r, drained && len(queued) > 0
}

// Ready reports whether b, the first bytes of a connection, let
// ReadRequest return without reading more: four whole fields, or a field
// whose length is already over MaxField. (The fifth field is only ever
// taken from bytes already there, so it never makes ReadRequest wait.)
func Ready(b []byte) bool {
	for range 4 {
		if len(b) < 2 {
			return false
		}
		n := int(binary.BigEndian.Uint16(b))
		if n > MaxField {
			return true
		}
		if len(b) < 2+n {
			return false
		}
		b = b[2+n:]
	}
	return true
}

// ReadRequest reads one request. It returns *FieldTooLongError,
// ErrTruncated, ErrNullLogin, ErrNullPassword, or the underlying read error
// (a timeout, for instance). For ErrNullLogin and ErrNullPassword the
// returned Request holds the fields that were read, for logging.
func (r *Reader) ReadRequest() (Request, error) {
	var f [4]string
	for i := range f {
		s, err := r.field(i)
		if err != nil {
			return Request{}, err
		}
		f[i] = s
	}
	req := Request{Login: f[0], Password: f[1], Service: f[2], Realm: f[3]}
	if r.queued() {
		if s, ok := r.fifth(); ok {
			req.ClientAddr, req.HasClientAddr = s, true
		}
	}
	switch {
	case req.Login == "":
		return req, ErrNullLogin
	case req.Password == "":
		return req, ErrNullPassword
	}
	return req, nil
}

func (r *Reader) field(i int) (string, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r.br, hdr[:]); err != nil {
		return "", truncated(err)
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	if n > MaxField {
		return "", &FieldTooLongError{Field: fieldNames[i], Length: n}
	}
	var buf [MaxField]byte
	if _, err := io.ReadFull(r.br, buf[:n]); err != nil {
		return "", truncated(err)
	}
	b := buf[:n]
	if j := bytes.IndexByte(b, 0); j >= 0 {
		b = b[:j]
	}
	s := string(b)
	clear(buf[:n]) // the password field passes through here
	return s, nil
}

// fifth parses the client address from bytes that are already queued, and
// only from those: a fifth field that is incomplete (a stray byte after four
// fields, a header without its body) or followed by more bytes (a second
// request) is left for Drain, since the four fields are a complete 2.1.28
// request and the client is waiting for its reply.
func (r *Reader) fifth() (string, bool) {
	if _, err := r.br.Peek(1); err != nil { // queued() saw a byte: no wait
		return "", false
	}
	b, _ := r.br.Peek(r.br.Buffered())
	if len(b) < 2 {
		return "", false
	}
	n := int(binary.BigEndian.Uint16(b))
	// A real 5-field client sends exactly five fields and waits. Bytes
	// beyond them mean this is not a client address but a second request
	// (or garbage) after a 4-field one: leave it all for Drain.
	if n > MaxField || len(b) != 2+n {
		return "", false
	}
	f := b[2 : 2+n]
	if j := bytes.IndexByte(f, 0); j >= 0 {
		f = f[:j]
	}
	s := string(f)
	_, _ = r.br.Discard(2 + n)
	return s, true
}

func truncated(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return ErrTruncated
	}
	return err
}

// queued reports whether more request bytes can be read without blocking:
// already in our buffer, or queued on the socket (MSG_PEEK|MSG_DONTWAIT).
func (r *Reader) queued() bool {
	if r.br.Buffered() > 0 {
		return true
	}
	if r.drained {
		return false
	}
	n, err, ok := r.peek()
	return ok && err == nil && n > 0
}

// peek looks at the socket's receive queue without waiting: n > 0 means
// bytes are queued, n == 0 with no error means EOF. ok is false when r is
// not a socket.
func (r *Reader) peek() (n int, err error, ok bool) {
	sc, isConn := r.conn.(syscall.Conn)
	if !isConn {
		return 0, nil, false
	}
	raw, rerr := sc.SyscallConn()
	if rerr != nil {
		return 0, nil, false
	}
	var b [1]byte
	cerr := raw.Read(func(fd uintptr) bool {
		// MSG_DONTWAIT: it returns at once, so RawSyscall, which keeps
		// the scheduler out of it (see daemon/rawsys.go)
		r, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		n = int(r)
		if e != 0 {
			n, err = 0, e
		}
		return true // never wait for readiness: that is the point
	})
	if cerr != nil {
		return 0, cerr, true
	}
	return n, err, true
}

// Settled reports whether, after the reply and the half-close, the
// connection can be closed at once instead of drained: nothing of the
// client's is left unread, in our buffer or on the socket (or the client
// has already closed). Closing then loses the client nothing: its reply is
// in its own queue, and with our receive queue empty the kernel sends it
// EOF, not a reset. Drain stays for a client that sent more than a request.
func (r *Reader) Settled() bool {
	if r.br.Buffered() > 0 {
		return false
	}
	n, err, ok := r.peek()
	if !ok {
		return false
	}
	return n == 0 || errors.Is(err, syscall.EAGAIN)
}

// Drain reads and discards until EOF, an error or limit bytes, as saslauthd
// does after its reply (so that a client writing a second request does not
// get a reset). The caller sets the deadline.
func (r *Reader) Drain(limit int64) (int64, error) {
	n, err := io.Copy(io.Discard, io.LimitReader(r.br, limit))
	if err == nil && n == limit {
		return n, errors.New("protocol: drain limit reached")
	}
	return n, err
}

// AppendReply appends the wire form of reply text to dst.
func AppendReply(dst []byte, text string) []byte {
	if len(text) > MaxReply {
		text = text[:MaxReply]
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(text)))
	return append(dst, text...)
}

// WriteReply writes one reply in a single write. Replies never carry a NUL
// terminator (the 2.1.28 source comment says they do; they do not).
func WriteReply(w io.Writer, text string) error {
	var b [2 + MaxReply]byte
	_, err := w.Write(AppendReply(b[:0], text))
	return err
}

// AppendRequest appends the wire form of req to dst: four fields, or five
// when HasClientAddr is set. Fields are sent as given, NULs included, so a
// test client can send what a real client cannot. It fails only on a field
// over 65535 bytes, which the 2-byte length cannot express.
func AppendRequest(dst []byte, req Request) ([]byte, error) {
	fields := []string{req.Login, req.Password, req.Service, req.Realm}
	if req.HasClientAddr {
		fields = append(fields, req.ClientAddr)
	}
	for i, f := range fields {
		if len(f) > 0xffff {
			return dst, fmt.Errorf("protocol: %s longer than 65535 bytes", fieldNames[i])
		}
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(f)))
		dst = append(dst, f...)
	}
	return dst, nil
}
