package firmwaresim_test

import (
	"testing"

	"github.com/tern-im/tern/internal/config"
)

// TestBenchConfig loads configs/bench.yaml through the real loader so the
// file scripts/compare.sh uses cannot rot.
func TestBenchConfig(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load("../configs/bench.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if !cfg.MQTT.Anonymous || len(cfg.Rules()) != 1 || cfg.WS.Addr != "" {
		t.Fatalf("bench config: anonymous %v, %d rules, ws %q", cfg.MQTT.Anonymous, len(cfg.Rules()), cfg.WS.Addr)
	}
}
