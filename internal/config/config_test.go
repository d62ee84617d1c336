package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestShippedConfigIsDefault loads configs/tern.yaml through the real
// loader: it must be valid and equal to DefaultConfig, so it cannot rot.
func TestShippedConfigIsDefault(t *testing.T) {
	t.Parallel()
	cfg, err := Load("../../configs/tern.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if want := DefaultConfig(); !reflect.DeepEqual(cfg, want) {
		t.Errorf("configs/tern.yaml differs from DefaultConfig:\n got %+v\nwant %+v", cfg, want)
	}
}

func TestShippedConfigsLoad(t *testing.T) {
	t.Parallel()
	entries, err := os.ReadDir("../../configs")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".yaml") {
			continue
		}
		t.Run(e.Name(), func(t *testing.T) {
			cfg, err := Load("../../configs/" + e.Name())
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDecodeStrict(t *testing.T) {
	t.Parallel()
	_, err := Decode(strings.NewReader("mqtt:\n  adress: \":1\"\n"))
	if err == nil || !strings.Contains(err.Error(), "adress") {
		t.Fatalf("unknown key: err = %v, want it named", err)
	}
	_, err = Decode(strings.NewReader("limits:\n  max_packet_size: lots\n"))
	if err == nil || !strings.Contains(err.Error(), "lots") {
		t.Fatalf("bad size: err = %v", err)
	}
	cfg, err := Decode(strings.NewReader("limits:\n  max_packet_size: 64KiB\n  max_keepalive: 60s\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Limits.MaxPacketSize != 64<<10 || cfg.Limits.MaxKeepalive != time.Minute {
		t.Errorf("decoded %v %v", cfg.Limits.MaxPacketSize, cfg.Limits.MaxKeepalive)
	}
	if cfg.Data != "./data" || cfg.MQTT.Addr != ":1883" {
		t.Errorf("defaults lost under partial file: %+v", cfg)
	}
	empty, err := Decode(strings.NewReader(""))
	if err != nil || !reflect.DeepEqual(empty, DefaultConfig()) {
		t.Errorf("empty file: %v, %+v", err, empty)
	}
}

func TestValidateNamesFields(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.LogLevel = "loud"
	cfg.TLS.Addr = ":8883"
	cfg.Limits.MaxPacketSize = 10
	cfg.Limits.ReceiveMaximum = 0
	cfg.IM.DMPolicy = "friends"
	cfg.Limits.MaxConnectionsPerIP = -1
	cfg.Limits.ConnectRatePerIP = 10 // without a burst
	cfg.Store.MinFreePercent = 0
	cfg.Store.DiskCheck = 0
	cfg.Limits.MaxSubscriptions = -1
	cfg.Limits.MaxInflightBytes = -1 // below max_packet_size
	cfg.IM.RPCWritePerMin = 0
	cfg.IM.MaxGroupsOwned = -1
	cfg.ACL.Rules = []Rule{{Filter: "im/#", Access: "read", Users: []string{"all"}}, {Filter: "x", Access: "sometimes", Users: []string{"all"}}}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, field := range []string{"log_level", "tls", "limits.max_packet_size", "limits.receive_maximum", "im.dm_policy", "acl.rules[0]", "acl.rules[1]",
		"limits.max_connections_per_ip", "limits.connect_burst_per_ip", "store.min_free_percent", "store.disk_check",
		"limits.max_subscriptions", "limits.max_inflight_bytes", "im.rpc_write_per_min", "im.max_groups_owned"} {
		if !strings.Contains(err.Error(), field+":") {
			t.Errorf("error does not name %s:\n%v", field, err)
		}
	}
}

func TestApplyEnv(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	env := map[string]string{"TERN_DATA": "/srv/tern", "TERN_WS_ADDR": "", "TERN_HTTP_ADDR": "127.0.0.1:9"}
	cfg.ApplyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if cfg.Data != "/srv/tern" || cfg.WS.Addr != "" || cfg.HTTP.Addr != "127.0.0.1:9" || cfg.MQTT.Addr != ":1883" {
		t.Errorf("env not applied: %+v", cfg)
	}
}

func TestByteSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want ByteSize
		ok   bool
	}{
		{"128KiB", 128 << 10, true}, {"4MiB", 4 << 20, true}, {"1GiB", 1 << 30, true},
		{"512B", 512, true}, {"1000", 1000, true}, {"2MB", 2e6, true}, {" 3 KiB ", 3 << 10, true},
		{"-1", 0, false}, {"KiB", 0, false}, {"1.5MiB", 0, false}, {"99999999999GiB", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseByteSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseByteSize(%q) = %v, %v; want %v ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
		if tt.ok {
			back, err := ParseByteSize(got.String())
			if err != nil || back != got {
				t.Errorf("round trip %v -> %q -> %v, %v", got, got.String(), back, err)
			}
		}
	}
}

func FuzzDecode(f *testing.F) {
	raw, err := os.ReadFile("../../configs/tern.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(raw))
	f.Add("limits: {max_packet_size: 1KiB}\nacl: {rules: [{filter: a/#, access: read, users: [all]}]}")
	f.Fuzz(func(t *testing.T, s string) {
		cfg, err := Decode(strings.NewReader(s))
		if err != nil {
			return
		}
		_ = cfg.Validate() // error or nil, never a panic
		_ = cfg.Rules()
	})
}

func FuzzParseByteSize(f *testing.F) {
	f.Add("128KiB")
	f.Add("7")
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseByteSize(s)
		if err != nil {
			return
		}
		if v < 0 {
			t.Fatalf("%q parsed negative: %d", s, v)
		}
		if back, err := ParseByteSize(v.String()); err != nil || back != v {
			t.Fatalf("round trip of %q: %v -> %q -> %v, %v", s, v, v.String(), back, err)
		}
	})
}
