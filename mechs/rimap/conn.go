package rimap

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/saslgate/saslgate/mechs"
)

// saslauthd's protocol constants (auth_rimap.c).
const (
	tag       = "saslauthd"
	replyGood = tag + " OK"
	replyBad  = tag + " NO"
	replyCap  = "* CAPABILITY"
	logoutCmd = tag + " LOGOUT\r\n"
	// maxResponse bounds the greeting and the LOGIN reply. saslauthd's
	// buffer is 1000 bytes, which a long capability list can overflow;
	// this is roomier, and overflowing it gets saslauthd's replies.
	maxResponse = 16 << 10
	// literalMinus is the largest literal LITERAL- lets a client send
	// without waiting (RFC 7888).
	literalMinus = 4096
	// logoutWait bounds the LOGOUT write; nobody waits for its answer.
	logoutWait = time.Second
	// ticketWait is how long a liveness check lets crypto/tls read records
	// that arrived on an idle TLS connection (TLS 1.3 session tickets).
	ticketWait = 2 * time.Millisecond
	// maxLogins caps the LOGINs one connection carries (a rejected one goes
	// back to the pool): servers may slow down or drop a connection with
	// many failures.
	maxLogins = 16
)

// aLongTimeAgo is a deadline in the past: it interrupts blocked I/O.
var aLongTimeAgo = time.Unix(1, 0)

var errTooLong = errors.New("response too long")

// conn is one connection to an IMAP server, greeted and (with TLS)
// secured, ready for LOGIN.
type conn struct {
	nc     net.Conn // *tls.Conn with TLS, else the TCP connection
	raw    net.Conn // the TCP connection
	br     *bufio.Reader
	where  string // "host[ip]/port", saslauthd's form, for the log
	caps   caps
	secure bool
	logins int
	idle   time.Time // when it was put in the pool
}

// caps is what the greeting's [CAPABILITY ...] code says, where it matters.
type caps struct {
	literalPlus, literalMinus, loginDisabled bool
}

// outcome is what one LOGIN came to, and what to do with the connection.
type outcome struct {
	res    mechs.Result
	keep   bool // tagged NO and the connection is clean: it may serve again
	logout bool // send LOGOUT, then close (saslauthd's cleanup)
	retry  bool // the command never reached the server whole
	config bool // a configuration error: log it as such
}

// dialServer resolves s (now, not at start) and connects to its addresses
// in order until one accepts; that connection is greeted and, with TLS,
// secured. cfgErr reports a configuration error (certificate, STARTTLS
// refused, LOGINDISABLED).
func dialServer(ctx context.Context, s Server, cfg Config, tc *tls.Config) (c *conn, res mechs.Result, cfgErr bool) {
	addrs, err := resolve(ctx, s.Host, cfg.ConnectTimeout)
	if err != nil {
		return nil, mechs.TempFailed(ReplyNoContact, fmt.Sprintf("resolve %s: %v", s.Host, err)), false
	}
	var fails []string
	var nc net.Conn
	var where string
	for _, a := range addrs {
		where = fmt.Sprintf("%s[%s]/%d", s.Host, a, s.Port)
		d := net.Dialer{Timeout: cfg.ConnectTimeout}
		nc, err = d.DialContext(ctx, "tcp", netip.AddrPortFrom(a, uint16(s.Port)).String())
		if err == nil {
			break
		}
		fails = append(fails, fmt.Sprintf("connect %s: %v", where, netErr(err)))
		if ctx.Err() != nil {
			break
		}
	}
	if nc == nil {
		fails = append(fails, fmt.Sprintf("couldn't connect to %s/%d", s.Host, s.Port))
		return nil, mechs.TempFailed(ReplyNoContact, strings.Join(fails, "; ")), false
	}
	c = &conn{nc: nc, raw: nc, br: bufio.NewReaderSize(nc, 4096), where: where}
	stop := c.guard(ctx, cfg.CommandTimeout)
	res, cfgErr, ok := c.open(ctx, cfg.TLS, tc)
	if !stop() {
		ok = false
		if res.Reply == "" {
			res = mechs.TempFailed(ReplyUnexpected, c.where+": "+context.Cause(ctx).Error())
		}
	}
	if !ok {
		c.close()
		return nil, res, cfgErr
	}
	_ = c.nc.SetDeadline(time.Time{})
	return c, mechs.Result{}, false
}

// resolve looks host up (an IP address is taken as is), bounded by the
// connect timeout.
func resolve(ctx context.Context, host string, timeout time.Duration) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, netErr(err)
	}
	if len(addrs) == 0 {
		return nil, errors.New("no address")
	}
	for i, a := range addrs {
		addrs[i] = a.Unmap()
	}
	return addrs, nil
}

// open reads the greeting and sets up TLS as configured.
func (c *conn) open(ctx context.Context, mode TLSMode, tc *tls.Config) (res mechs.Result, cfgErr, ok bool) {
	if mode == TLSImplicit {
		if res, cfgErr, ok := c.handshake(ctx, tc); !ok {
			return res, cfgErr, false
		}
	}
	if res, ok := c.greet(); !ok {
		return res, false, false
	}
	switch {
	case mode == TLSStartTLS:
		return c.startTLS(ctx, tc)
	case mode == TLSNone && c.caps.loginDisabled:
		// The server says it will not take LOGIN in the clear: sending the
		// password anyway would expose it for nothing.
		return mechs.TempFailed(ReplyUnexpected, c.where+" advertises LOGINDISABLED: it wants TLS first ("+
			KeyTLS+"=starttls or implicit)"), true, false
	}
	return mechs.Result{}, false, true
}

// greet reads and classifies the greeting as saslauthd does: "* NO" and
// "* BYE" mean unavailable, anything but "* OK" is unexpected.
func (c *conn) greet() (mechs.Result, bool) {
	line, err := c.readLine()
	if err != nil {
		switch {
		case errors.Is(err, errTooLong):
			return mechs.TempFailed(ReplySync, fmt.Sprintf("read (banner) from %s: more than %d bytes", c.where, maxResponse)), false
		case isEOF(err) || isTimeout(err):
			// saslauthd's read_response returns 0 for both: an empty
			// greeting, which is not "* OK".
			return mechs.TempFailed(ReplyUnexpected, fmt.Sprintf("unexpected response during initial handshake with %s: none (%v)", c.where, netErr(err))), false
		}
		return mechs.TempFailed(ReplySync, fmt.Sprintf("read (banner) from %s: %v", c.where, netErr(err))), false
	}
	text := firstLine(line)
	switch {
	case strings.HasPrefix(text, "* NO"), strings.HasPrefix(text, "* BYE"):
		return mechs.TempFailed(ReplyUnavailable, fmt.Sprintf("%s is unavailable: %s", c.where, printable(text))), false
	case !strings.HasPrefix(text, "* OK"):
		return mechs.TempFailed(ReplyUnexpected, fmt.Sprintf("unexpected response during initial handshake with %s: %s", c.where, printable(text))), false
	}
	c.caps = parseCaps(text)
	// saslauthd reads the greeting in one go and drops whatever came with
	// it; so do we, which also keeps anything sent before STARTTLS out of
	// the TLS session.
	_, _ = c.br.Discard(c.br.Buffered())
	return mechs.Result{}, true
}

// startTLS sends STARTTLS and secures the connection.
func (c *conn) startTLS(ctx context.Context, tc *tls.Config) (mechs.Result, bool, bool) {
	if _, err := io.WriteString(c.nc, tag+" STARTTLS\r\n"); err != nil {
		return mechs.TempFailed(ReplyInternal, fmt.Sprintf("writev %s STARTTLS to %s: %v", tag, c.where, netErr(err))), false, false
	}
	for {
		line, err := c.readLine()
		if err != nil {
			return mechs.TempFailed(ReplyUnexpected, fmt.Sprintf("STARTTLS on %s: %v", c.where, netErr(err))), false, false
		}
		text := firstLine(line)
		switch {
		case strings.HasPrefix(text, tag+" OK"):
		case strings.HasPrefix(text, tag+" "):
			return mechs.TempFailed(ReplyUnexpected, fmt.Sprintf("%s refused STARTTLS: %s", c.where, printable(text))), true, false
		case strings.HasPrefix(text, "* "):
			continue
		default:
			return mechs.TempFailed(ReplyUnexpected, fmt.Sprintf("unexpected response to STARTTLS from %s: %s", c.where, printable(text))), false, false
		}
		break
	}
	if c.br.Buffered() > 0 {
		// Bytes sent in the clear after the OK would be read as if they
		// came through TLS (CVE-2011-0411 and friends).
		return mechs.TempFailed(ReplyUnexpected, c.where+" sent data after its STARTTLS reply"), false, false
	}
	c.caps = caps{} // RFC 3501 6.2.1: forget what was said in the clear
	return c.handshake(ctx, tc)
}

func (c *conn) handshake(ctx context.Context, tc *tls.Config) (mechs.Result, bool, bool) {
	t := tls.Client(c.raw, tc)
	if err := t.HandshakeContext(ctx); err != nil {
		cfgErr := isCertError(err)
		return mechs.TempFailed(ReplyNoContact, fmt.Sprintf("TLS handshake with %s: %v", c.where, netErr(err))), cfgErr, false
	}
	c.nc, c.secure = t, true
	c.br.Reset(t)
	return mechs.Result{}, false, true
}

func isCertError(err error) bool {
	var (
		v *tls.CertificateVerificationError
		u x509.UnknownAuthorityError
		h x509.HostnameError
		i x509.CertificateInvalidError
	)
	return errors.As(err, &v) || errors.As(err, &u) || errors.As(err, &h) || errors.As(err, &i)
}

// login sends LOGIN and classifies the reply as saslauthd does.
func (c *conn) login(ctx context.Context, timeout time.Duration, login, password string) (out outcome) {
	c.logins++
	stop := c.guard(ctx, timeout)
	defer func() {
		if !stop() {
			// the request was cancelled under us: whatever was read, the
			// connection is in an unknown state
			out.keep, out.logout, out.retry = false, false, false
			if out.res.Verdict != mechs.Accept && out.res.Verdict != mechs.Reject {
				out.res.Reason += " (" + context.Cause(ctx).Error() + ")"
			}
			return
		}
		_ = c.nc.SetDeadline(time.Time{})
	}()
	segs := loginCommand(login, password, c.caps)
	defer func() {
		for _, s := range segs {
			clear(s)
		}
	}()
	for i, seg := range segs {
		if _, err := c.nc.Write(seg); err != nil {
			// A write that fails leaves the command without its final
			// CRLF: the server has not run it, so it may be retried.
			return outcome{res: mechs.TempFailed(ReplyInternal, fmt.Sprintf("writev %s LOGIN to %s: %v", tag, c.where, netErr(err))), retry: true}
		}
		if i == len(segs)-1 {
			break
		}
		// a synchronizing literal: wait for the server's "+"
		if out, done := c.continuation(); done {
			return out
		}
	}
	return c.reply()
}

// continuation waits for "+" before a literal. A tagged line instead ends
// the command early (the server refused the literal): it is the reply.
func (c *conn) continuation() (outcome, bool) {
	var buf []byte
	for {
		line, err := c.readLine()
		if err != nil {
			return c.readFailure(err), true
		}
		if bytes.HasPrefix(line, []byte("+")) {
			return outcome{}, false
		}
		buf = append(buf, line...)
		if st, text := classify(buf); st != needMore {
			return c.classified(st, text), true
		}
	}
}

// reply reads the LOGIN reply up to the tagged line.
func (c *conn) reply() outcome {
	var buf []byte
	for {
		line, err := c.readLine()
		buf = append(buf, line...)
		if err == nil && len(buf) > maxResponse {
			err = errTooLong
		}
		if err != nil {
			return c.readFailure(err)
		}
		if st, text := classify(buf); st != needMore {
			return c.classified(st, text)
		}
	}
}

// readFailure maps a failed read of the LOGIN reply to saslauthd's reply:
// end of file and timeouts give an empty reply, which is malformed, and
// LOGOUT is still sent; other errors and overflow are internal errors, and
// the connection is just closed.
func (c *conn) readFailure(err error) outcome {
	switch {
	case errors.Is(err, errTooLong):
		return outcome{res: mechs.TempFailed(ReplyInternal, fmt.Sprintf("read (response) from %s: more than %d bytes", c.where, maxResponse))}
	case isEOF(err) || isTimeout(err):
		return outcome{res: mechs.TempFailed(ReplyUnexpected, fmt.Sprintf("unexpected response to auth request from %s: none (%v)", c.where, netErr(err))), logout: true}
	}
	return outcome{res: mechs.TempFailed(ReplyInternal, fmt.Sprintf("read (response) from %s: %v", c.where, netErr(err)))}
}

type status uint8

const (
	needMore status = iota
	accepted
	rejected
	malformed
)

// classify is saslauthd's process_login_reply over what has been read so
// far: lines end at CR or LF, "saslauthd OK" accepts, "saslauthd NO"
// rejects, "* CAPABILITY" is skipped, anything else is malformed. Where
// saslauthd would run out of lines, we read more.
func classify(b []byte) (status, string) {
	i := 0
	for {
		j := bytes.IndexAny(b[i:], "\r\n")
		if j < 0 {
			return needMore, ""
		}
		line := string(b[i : i+j])
		switch {
		case strings.HasPrefix(line, replyGood):
			return accepted, line
		case strings.HasPrefix(line, replyBad):
			return rejected, line
		case strings.HasPrefix(line, replyCap):
		default:
			return malformed, line
		}
		for i += j; i < len(b) && (b[i] == '\r' || b[i] == '\n'); i++ {
		}
		if i == len(b) {
			return needMore, ""
		}
	}
}

func (c *conn) classified(st status, line string) outcome {
	clean := c.br.Buffered() == 0
	switch st {
	case accepted:
		return outcome{res: mechs.Result{Verdict: mechs.Accept, Reply: ReplyOK}, logout: true}
	case rejected:
		code := strings.ToUpper(strings.TrimSpace(strings.TrimPrefix(line, replyBad)))
		switch {
		case strings.HasPrefix(code, "[UNAVAILABLE]"):
			// RFC 5530: the server's own back end is down; not a verdict
			// on the password
			return outcome{res: mechs.TempFailed(ReplyUnavailable, fmt.Sprintf("%s: %s", c.where, printable(line))), logout: true}
		case strings.HasPrefix(code, "[PRIVACYREQUIRED]"):
			return outcome{res: mechs.TempFailed(ReplyUnexpected, fmt.Sprintf("%s wants TLS before LOGIN ("+KeyTLS+"=starttls or implicit): %s",
				c.where, printable(line))), logout: true, config: true}
		}
		return outcome{res: mechs.Result{Verdict: mechs.Reject, Reply: ReplyRejected,
			Reason: fmt.Sprintf("%s: %s", c.where, printable(line))},
			keep: clean && c.logins < maxLogins, logout: true}
	}
	return outcome{res: mechs.TempFailed(ReplyUnexpected, fmt.Sprintf("unexpected response to auth request from %s: %s", c.where, printable(line))), logout: true}
}

// loginCommand builds saslauthd's LOGIN command. Each value is a quoted
// string with `"` and `\` escaped, as saslauthd's qstring, unless it holds
// a byte a quoted string cannot carry (CR, LF, NUL, 8-bit): then it is a
// literal, non-synchronizing when the greeting offered LITERAL+ (or
// LITERAL- and it is small enough). The command is cut after each
// synchronizing literal's header, where the server's "+" is awaited.
func loginCommand(login, password string, cp caps) [][]byte {
	var segs [][]byte
	cur := make([]byte, 0, 32+2*(len(login)+len(password)))
	cur = append(cur, tag+" LOGIN "...)
	for i, s := range []string{login, password} {
		if i > 0 {
			cur = append(cur, ' ')
		}
		if !needsLiteral(s) {
			cur = quote(cur, s)
			continue
		}
		if cp.literalPlus || cp.literalMinus && len(s) <= literalMinus {
			cur = append(cur, '{')
			cur = strconv.AppendInt(cur, int64(len(s)), 10)
			cur = append(cur, "+}\r\n"...)
			cur = append(cur, s...)
			continue
		}
		cur = append(cur, '{')
		cur = strconv.AppendInt(cur, int64(len(s)), 10)
		cur = append(cur, "}\r\n"...)
		segs = append(segs, cur)
		cur = append(make([]byte, 0, len(s)+len(password)+8), s...)
	}
	cur = append(cur, "\r\n"...)
	return append(segs, cur)
}

func needsLiteral(s string) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b == '\r' || b == '\n' || b == 0 || b >= 0x80 {
			return true
		}
	}
	return false
}

// quote appends s as saslauthd's qstring does: in double quotes, with a
// backslash before every `"` and `\`.
func quote(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			dst = append(dst, '\\')
		}
		dst = append(dst, s[i])
	}
	return append(dst, '"')
}

// parseCaps reads the greeting's [CAPABILITY ...] response code.
func parseCaps(greeting string) caps {
	var cp caps
	rest, ok := strings.CutPrefix(greeting, "* OK [")
	if !ok {
		return cp
	}
	code, _, ok := strings.Cut(rest, "]")
	if !ok {
		return cp
	}
	f := strings.Fields(strings.ToUpper(code))
	if len(f) == 0 || f[0] != "CAPABILITY" {
		return cp
	}
	for _, c := range f[1:] {
		switch c {
		case "LITERAL+":
			cp.literalPlus = true
		case "LITERAL-":
			cp.literalMinus = true
		case "LOGINDISABLED":
			cp.loginDisabled = true
		}
	}
	return cp
}

// readLine returns the next line with its LF, at most maxResponse bytes; at
// end of file or on error it returns what came and the error.
func (c *conn) readLine() ([]byte, error) {
	var line []byte
	for {
		frag, err := c.br.ReadSlice('\n')
		if len(line)+len(frag) > maxResponse {
			return nil, errTooLong
		}
		line = append(line, frag...)
		if err != bufio.ErrBufferFull {
			return line, err
		}
	}
}

// guard bounds the I/O that follows by timeout and by ctx (its deadline
// and its cancellation). The returned stop reports false when ctx ended
// first: the connection's deadline is then in the past.
func (c *conn) guard(ctx context.Context, timeout time.Duration) func() bool {
	dl := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	_ = c.nc.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { _ = c.raw.SetDeadline(aLongTimeAgo) })
	return func() bool { return stop() && ctx.Err() == nil }
}

// alive tells whether a connection that sat in the pool can still be used:
// the server has not closed it nor said anything (such as "* BYE
// Autologout") since.
func (c *conn) alive() bool {
	if c.br.Buffered() > 0 {
		return false
	}
	switch peek(c.raw) {
	case peekIdle, peekUnknown:
		return true
	case peekData:
		if !c.secure {
			return false
		}
		// Under TLS the bytes may be records that carry no data (TLS 1.3
		// session tickets sent after the handshake): let crypto/tls read
		// them. Any application data, an alert or EOF means the end.
		_ = c.nc.SetReadDeadline(time.Now().Add(ticketWait))
		var b [1]byte
		n, err := c.nc.Read(b[:])
		_ = c.nc.SetReadDeadline(time.Time{})
		return n == 0 && isTimeout(err)
	}
	return false
}

// logout sends LOGOUT without waiting for the answer and closes, as
// saslauthd does.
func (c *conn) logout() {
	_ = c.nc.SetWriteDeadline(time.Now().Add(logoutWait))
	_, _ = io.WriteString(c.nc, logoutCmd)
	c.close()
}

func (c *conn) close() {
	if c.secure {
		// no close_notify dance: the socket goes, as saslauthd's close(2)
		_ = c.raw.Close()
		return
	}
	_ = c.nc.Close()
}

// firstLine is the text before the first CR or LF (saslauthd's strpbrk).
func firstLine(b []byte) string {
	if i := bytes.IndexAny(b, "\r\n"); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// printable bounds and cleans server text for the log.
func printable(s string) string {
	const max = 200
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// netErr shortens Go's "dial tcp 127.0.0.1:143: connect: connection
// refused" to saslauthd's "connection refused" style.
func netErr(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		var se *os.SyscallError
		if errors.As(op.Err, &se) {
			return se.Err
		}
		return op.Err
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return errors.New(dns.Err)
	}
	return err
}
