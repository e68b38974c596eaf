//go:build linux && cgo

package pam

import (
	"errors"
	"runtime"

	pamapi "github.com/msteinert/pam/v2"

	"github.com/saslgate/saslgate/mechs"
)

// supported: this build can call libpam.
const supported = true

// confDirSupported reports whether libpam has pam_start_confdir
// (Linux-PAM 1.4 and later), which the hidden pam_confdir option needs.
func confDirSupported() bool { return pamapi.CheckPamHasStartConfdir() }

// runTxn runs one PAM transaction as saslauthd's auth_pam does:
// pam_start(service, login), PAM_RHOST when known, pam_authenticate and
// pam_acct_mgmt with PAM_SILENT, pam_end whatever happened. No pam_setcred,
// no session, no PAM_TTY.
func runTxn(r *txnRequest) txnResult {
	// Start…End on one OS thread: modules keep per-thread state (errno,
	// thread-locals, non-reentrant libraries) and the Go scheduler would
	// otherwise be free to move the goroutine between calls.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	conv := &conversation{login: r.Login, password: r.Password}
	// The library keeps the handler alive in a cgo.Handle that it never
	// frees when pam_start fails; emptying it here keeps the password out
	// of that leak.
	defer conv.wipe()
	var (
		tx  *pamapi.Transaction
		err error
	)
	if r.ConfDir != "" {
		tx, err = pamapi.StartConfDir(r.Service, r.Login, conv, r.ConfDir)
	} else {
		tx, err = pamapi.Start(r.Service, r.Login, conv)
	}
	if err != nil {
		return failed(stageStart, err)
	}
	defer func() { _ = tx.End() }()
	conv.tx = tx
	if r.RHost != "" {
		if err := tx.SetItem(pamapi.Rhost, r.RHost); err != nil {
			return failed(stageItem, err)
		}
	}
	if err := tx.Authenticate(pamapi.Silent); err != nil {
		return failed(stageAuth, err)
	}
	// PAM_NEW_AUTHTOK_REQD is an error like any other here: saslauthd has no
	// way to change a password, so an expired one is a refusal.
	if err := tx.AcctMgmt(pamapi.Silent); err != nil {
		return failed(stageAcct, err)
	}
	return txnResult{Stage: stageOK}
}

func failed(s stage, err error) txnResult {
	code := pamapi.ErrSystem
	var pe pamapi.Error
	if errors.As(err, &pe) {
		code = pe
	}
	return txnResult{Stage: s, Code: int32(code), Msg: err.Error()}
}

// conversation answers PAM's prompts as saslauthd_pam_conv does.
type conversation struct {
	login, password string
	tx              *pamapi.Transaction // set once pam_start has returned
}

var errUnknownStyle = errors.New("unknown message style")

// RespondPAM implements pamapi.ConversationHandler. An error makes the
// library answer PAM_CONV_ERR for the whole conversation.
func (c *conversation) RespondPAM(style pamapi.Style, msg string) (string, error) {
	switch style {
	case pamapi.PromptEchoOff:
		// Every hidden prompt is taken for the password, OTP prompts
		// included, as saslauthd does.
		return c.password, nil
	case pamapi.PromptEchoOn:
		// The login, but only for the prompt PAM asks for a user name
		// with. saslauthd strcmp()s against PAM_USER_PROMPT without a NULL
		// check and crashes when a module echo-prompts while the item is
		// unset; an unset (or empty) item matches nothing here.
		if c.tx != nil {
			if up, err := c.tx.GetItem(pamapi.UserPrompt); err == nil && up != "" && up == msg {
				return c.login, nil
			}
		}
		return "", nil
	case pamapi.ErrorMsg, pamapi.TextInfo:
		return "", nil
	}
	return "", errUnknownStyle
}

func (c *conversation) wipe() {
	c.login, c.password, c.tx = "", "", nil
}

// verdict maps a failed stage's PAM code to Reject (the stack said no about
// this user) or TempFail (the stack could not decide: broken configuration,
// a back end down, a conversation it could not hold). Codes not listed are
// TempFail: an unknown answer must not let a chain go on to a weaker
// mechanism.
func verdict(r txnResult) mechs.Verdict {
	code := pamapi.Error(r.Code)
	switch r.Stage {
	case stageOK:
		return mechs.Accept
	case stageAuth:
		switch code {
		case pamapi.ErrAuth, pamapi.ErrUserUnknown, pamapi.ErrMaxtries, pamapi.ErrCredInsufficient,
			pamapi.ErrPermDenied, pamapi.ErrAcctExpired, pamapi.ErrNewAuthtokReqd,
			pamapi.ErrAuthtokExpired, pamapi.ErrCredExpired:
			return mechs.Reject
		}
	case stageAcct:
		switch code {
		case pamapi.ErrAcctExpired, pamapi.ErrNewAuthtokReqd, pamapi.ErrPermDenied,
			pamapi.ErrUserUnknown, pamapi.ErrAuthtokExpired, pamapi.ErrAuth,
			pamapi.ErrCredExpired, pamapi.ErrMaxtries:
			return mechs.Reject
		}
	}
	return mechs.TempFail
}

var _ pamapi.ConversationHandler = (*conversation)(nil)
