//go:build linux && cgo

package pam

import (
	"testing"

	pamapi "github.com/msteinert/pam/v2"

	"github.com/saslgate/saslgate/mechs"
)

// TestResultMapping: each stage keeps saslauthd's reply whatever the
// code; the code only decides Reject (the stack said no) versus TempFail
// (it could not decide).
func TestResultMapping(t *testing.T) {
	cases := []struct {
		stage   stage
		code    pamapi.Error
		verdict mechs.Verdict
		reply   string
	}{
		{stageOK, 0, mechs.Accept, "OK"},
		{stageStart, pamapi.ErrAbort, mechs.TempFail, "NO PAM start error"},
		{stageStart, pamapi.ErrBuf, mechs.TempFail, "NO PAM start error"},
		{stageItem, pamapi.ErrBadItem, mechs.TempFail, "NO PAM start error"},
		{stageAuth, pamapi.ErrAuth, mechs.Reject, "NO PAM auth error"},
		{stageAuth, pamapi.ErrUserUnknown, mechs.Reject, "NO PAM auth error"},
		{stageAuth, pamapi.ErrMaxtries, mechs.Reject, "NO PAM auth error"},
		{stageAuth, pamapi.ErrCredInsufficient, mechs.Reject, "NO PAM auth error"},
		{stageAuth, pamapi.ErrPermDenied, mechs.Reject, "NO PAM auth error"},
		{stageAuth, pamapi.ErrAuthinfoUnavail, mechs.TempFail, "NO PAM auth error"},
		{stageAuth, pamapi.ErrSystem, mechs.TempFail, "NO PAM auth error"},
		{stageAuth, pamapi.ErrBuf, mechs.TempFail, "NO PAM auth error"},
		{stageAuth, pamapi.ErrOpen, mechs.TempFail, "NO PAM auth error"},
		{stageAuth, pamapi.ErrSymbol, mechs.TempFail, "NO PAM auth error"},
		{stageAuth, pamapi.ErrService, mechs.TempFail, "NO PAM auth error"},
		{stageAuth, pamapi.ErrConv, mechs.TempFail, "NO PAM auth error"},
		{stageAuth, pamapi.ErrAbort, mechs.TempFail, "NO PAM auth error"},
		{stageAuth, pamapi.ErrTryAgain, mechs.TempFail, "NO PAM auth error"},
		{stageAcct, pamapi.ErrAcctExpired, mechs.Reject, "NO PAM acct error"},
		{stageAcct, pamapi.ErrNewAuthtokReqd, mechs.Reject, "NO PAM acct error"},
		{stageAcct, pamapi.ErrPermDenied, mechs.Reject, "NO PAM acct error"},
		{stageAcct, pamapi.ErrUserUnknown, mechs.Reject, "NO PAM acct error"},
		{stageAcct, pamapi.ErrAuthtokExpired, mechs.Reject, "NO PAM acct error"},
		{stageAcct, pamapi.ErrSystem, mechs.TempFail, "NO PAM acct error"},
		{stageAcct, pamapi.ErrAuthinfoUnavail, mechs.TempFail, "NO PAM acct error"},
		{stageAcct, pamapi.ErrBuf, mechs.TempFail, "NO PAM acct error"},
	}
	for _, c := range cases {
		r := result(txnResult{Stage: c.stage, Code: int32(c.code), Msg: c.code.Error()})
		if r.Verdict != c.verdict || r.Reply != c.reply {
			t.Errorf("stage %d, %v: got %v %q, want %v %q", c.stage, c.code, r.Verdict, r.Reply, c.verdict, c.reply)
		}
		if c.stage != stageOK && r.Reason == "" {
			t.Errorf("stage %d, %v: no reason", c.stage, c.code)
		}
	}
}

// TestConversation: saslauthd's answers, without a PAM stack (the tests
// with one are in pam_test.go).
func TestConversation(t *testing.T) {
	c := &conversation{login: "alice", password: "pw"}
	for _, tc := range []struct {
		style pamapi.Style
		msg   string
		want  string
		err   bool
	}{
		{pamapi.PromptEchoOff, "Password: ", "pw", false},
		{pamapi.PromptEchoOff, "OTP: ", "pw", false},
		{pamapi.PromptEchoOn, "login: ", "", false}, // no transaction: no user prompt to match
		{pamapi.PromptEchoOn, "", "", false},
		{pamapi.ErrorMsg, "oops", "", false},
		{pamapi.TextInfo, "hi", "", false},
		{pamapi.BinaryPrompt, "", "", true},
		{pamapi.Style(99), "", "", true},
	} {
		got, err := c.RespondPAM(tc.style, tc.msg)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("style %d %q: got %q, %v", tc.style, tc.msg, got, err)
		}
	}
	c.wipe()
	if c.password != "" || c.login != "" {
		t.Fatal("wipe left the credentials")
	}
}
