package pam

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The pipe between the daemon and a worker carries frames: a 4-byte
// big-endian payload length, then the payload. Strings inside a payload
// are a 2-byte big-endian length and the bytes.
//
//	hello    (worker → daemon, once, at start): helloMagic
//	request  (daemon → worker): version byte, service, login, password,
//	         rhost, confdir
//	response (worker → daemon): stage byte, 4-byte PAM code, message
//
// Every length is checked against a bound before anything is allocated, on
// both sides: a confused or hostile peer gets an error, never a large
// allocation or a hang.
const (
	// helloMagic names the protocol and its version; a worker from another
	// build (a custom pam_worker_cmd, a binary replaced on disk) that
	// speaks something else is refused at start.
	helloMagic        = "saslgate-pam-worker/1"
	protoVersion byte = 1
	// maxField bounds one string. The daemon already cuts login,
	// password and service at 256 bytes; a confdir is a path.
	maxField = 4096
	// maxFrame bounds a whole frame: five maximal fields and their headers.
	maxFrame = 1 + 5*(2+maxField)
	// maxMessage bounds the PAM error text in a response.
	maxMessage = 1024
)

var errFrame = errors.New("malformed frame")

// txnRequest is one PAM transaction to run.
type txnRequest struct {
	Service  string
	Login    string
	Password string
	RHost    string // PAM_RHOST, empty for none
	ConfDir  string // pam_start_confdir's directory, empty for the system's
}

// stage says how far a transaction got.
type stage uint8

const (
	stageOK    stage = iota // authenticated and account valid
	stageStart              // pam_start failed
	stageItem               // pam_set_item(PAM_RHOST) failed
	stageAuth               // pam_authenticate failed
	stageAcct               // pam_acct_mgmt failed
	stageMax
)

// txnResult is what came of a transaction: the stage that failed (or
// stageOK), the PAM return code and pam_strerror's text for it.
type txnResult struct {
	Stage stage
	Code  int32
	Msg   string
}

// writeFrame sends payload as one frame in one write, so that a frame is
// never interleaved or half-sent by a short write on a healthy pipe.
func writeFrame(w io.Writer, payload []byte) error {
	if len(payload) > maxFrame {
		return fmt.Errorf("frame of %d bytes is over the %d-byte limit", len(payload), maxFrame)
	}
	buf := make([]byte, 4+len(payload))
	binary.BigEndian.PutUint32(buf, uint32(len(payload)))
	copy(buf[4:], payload)
	_, err := w.Write(buf)
	clear(buf) // it may hold a password
	return err
}

// readFrame reads one frame. io.EOF means the peer closed the pipe cleanly
// between frames; a frame cut short is io.ErrUnexpectedEOF.
func readFrame(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxFrame {
		return nil, fmt.Errorf("%w: length %d is over the %d-byte limit", errFrame, n, maxFrame)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// decoder reads the fields of one payload, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) < 1 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uint32() uint32 {
	if d.err != nil || len(d.b) < 4 {
		d.fail()
		return 0
	}
	v := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *decoder) string(limit int) string {
	if d.err != nil || len(d.b) < 2 {
		d.fail()
		return ""
	}
	n := int(binary.BigEndian.Uint16(d.b))
	if n > limit || len(d.b)-2 < n {
		d.fail()
		return ""
	}
	s := string(d.b[2 : 2+n])
	d.b = d.b[2+n:]
	return s
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errFrame
	}
}

func (d *decoder) finish() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", errFrame, len(d.b))
	}
	return d.err
}

// encodeRequest builds a request payload; a field over maxField is an
// error, not a silent cut (a cut password could match a shorter one).
func encodeRequest(r *txnRequest) ([]byte, error) {
	fields := []string{r.Service, r.Login, r.Password, r.RHost, r.ConfDir}
	size := 1
	for i, f := range fields {
		if len(f) > maxField {
			return nil, fmt.Errorf("request field %d is %d bytes, over the %d-byte limit", i, len(f), maxField)
		}
		size += 2 + len(f)
	}
	b := make([]byte, 0, size)
	b = append(b, protoVersion)
	for _, f := range fields {
		b = appendString(b, f)
	}
	return b, nil
}

func decodeRequest(p []byte) (txnRequest, error) {
	d := decoder{b: p}
	if v := d.byte(); d.err == nil && v != protoVersion {
		return txnRequest{}, fmt.Errorf("%w: protocol version %d, want %d", errFrame, v, protoVersion)
	}
	r := txnRequest{
		Service:  d.string(maxField),
		Login:    d.string(maxField),
		Password: d.string(maxField),
		RHost:    d.string(maxField),
		ConfDir:  d.string(maxField),
	}
	if err := d.finish(); err != nil {
		return txnRequest{}, err
	}
	return r, nil
}

func encodeResult(r txnResult) []byte {
	msg := r.Msg
	if len(msg) > maxMessage {
		msg = msg[:maxMessage]
	}
	b := make([]byte, 0, 1+4+2+len(msg))
	b = append(b, byte(r.Stage))
	b = binary.BigEndian.AppendUint32(b, uint32(r.Code))
	return appendString(b, msg)
}

func decodeResult(p []byte) (txnResult, error) {
	d := decoder{b: p}
	r := txnResult{Stage: stage(d.byte()), Code: int32(d.uint32()), Msg: d.string(maxMessage)}
	if err := d.finish(); err != nil {
		return txnResult{}, err
	}
	if r.Stage >= stageMax {
		return txnResult{}, fmt.Errorf("%w: unknown stage %d", errFrame, r.Stage)
	}
	return r, nil
}
