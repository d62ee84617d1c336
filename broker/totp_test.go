package broker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
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
// issues a token that
// connects; POST /v1/login answers 401 "otp required" without a code,
// a token with it, and refuses the same code twice. Everything is
// audited.
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
	login := func(otp string) (int, map[string]any) {
		t.Helper()
		body, _ := json.Marshal(map[string]string{"uid": "alice", "password": pw, "otp": otp, "did": "web1"})
		resp, err := http.Post(b.HTTPURL()+"/v1/login", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, out
	}
	if code, out := login(""); code != 401 || out["msg"] != "otp required" {
		t.Fatalf("POST /v1/login without otp: %d %v", code, out)
	}
	code2, out := login(code)
	if code2 != 200 {
		t.Fatalf("POST /v1/login with a computed code: %d %v", code2, out)
	}
	b.Dial("alice", "web1", out["token"].(string))
	if c, out := login(code); c != 401 || out["msg"] != "wrong or used otp" {
		t.Fatalf("the same code again: %d %v", c, out)
	}
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
		func(l auditLine) bool {
			return l.Type == audit.AuthLogin && l.DID == "web1" && !l.OK && l.Reason == "otp_required"
		},
		func(l auditLine) bool {
			return l.Type == audit.AuthLogin && l.DID == "web1" && l.OK && l.Reason == "web"
		},
		func(l auditLine) bool {
			return l.Type == audit.AuthLogin && l.DID == "web1" && !l.OK && l.Reason == "bad_otp"
		},
	} {
		if _, ok := find(ls, want); !ok {
			t.Errorf("audit line missing in %+v", ls)
		}
	}
}
