package broker_test

import (
	"context"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/pquerna/otp/totp"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/adminapi"
	"github.com/tern-im/tern/internal/audit"
)

// TestTOTPLogin: after `tern user totp enable` (the admin API), alice's
// password is refused as an MQTT password (3.1.1 and MQTT 5: bad user
// name or password) and her password session is ended, her device token
// still connects, and a login with a code computed from the secret
// (accounts.LoginWithOTP, what POST /v1/login calls) issues a token that
// connects. The refusal is audited as otp_required.
func TestTOTPLogin(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	b.AddUser("alice", pw)
	tok := b.Token("alice", "p1")
	lost := make(chan struct{})
	o := b.ClientOptions("alice.p9", "alice", pw).SetAutoReconnect(false).
		SetConnectionLostHandler(func(paho.Client, error) { close(lost) })
	b.Connect(o)
	ctx := context.Background()
	api := adminapi.NewClient(b.HTTPURL(), b.AdminToken())
	setup, err := api.EnableTOTP(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.EnableTOTP(ctx, "alice"); err == nil {
		t.Error("enabled twice")
	}
	select {
	case <-lost:
	case <-time.After(brokertest.Timeout):
		t.Error("the password session survived enabling two-factor login")
	}
	if err := b.TryConnect(b.ClientOptions("alice.p2", "alice", pw)); err == nil {
		t.Fatal("password accepted for a TOTP user")
	}
	if _, ca, err := b.Dial5("alice", "p5", pw); err == nil || ca == nil || ca.ReasonCode != 0x86 {
		t.Fatalf("MQTT 5 password: %+v %v, want 0x86", ca, err)
	}
	b.Dial("alice", "p1", tok)
	code, err := totp.GenerateCode(setup.Secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	secret, _, err := b.Accounts().LoginWithOTP("alice", pw, code, "web1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b.Dial("alice", "web1", secret)
	if err := api.DisableTOTP(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	b.Dial("alice", "p3", pw)
	dir := b.AuditDir()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	ls := readAudit(t, dir)
	for _, want := range []func(auditLine) bool{
		func(l auditLine) bool { return l.Type == audit.UserTOTP && l.Target == "enable" && l.OK },
		func(l auditLine) bool { return l.Type == audit.UserTOTP && l.Target == "enable" && !l.OK },
		func(l auditLine) bool {
			return l.Type == audit.AuthLogin && l.DID == "p2" && !l.OK && l.Reason == "otp_required"
		},
		func(l auditLine) bool { return l.Type == audit.UserTOTP && l.Target == "disable" && l.OK },
	} {
		if _, ok := find(ls, want); !ok {
			t.Errorf("audit line missing in %+v", ls)
		}
	}
}
