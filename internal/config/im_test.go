package config

import (
	"strings"
	"testing"
	"time"
)

func TestValidateIM(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		mod   func(*Config)
		field string
	}{
		{"dm policy", func(c *Config) { c.IM.DMPolicy = "friends" }, "im.dm_policy"},
		{"max body", func(c *Config) { c.IM.MaxBody = 0 }, "im.max_body"},
		{"max body over packet", func(c *Config) { c.IM.MaxBody = c.Limits.MaxPacketSize }, "im.max_body"},
		{"burst", func(c *Config) { c.IM.RateBurst = 0 }, "im.rate_burst"},
		{"rate", func(c *Config) { c.IM.RatePerSec = 0 }, "im.rate_per_sec"},
		{"group size", func(c *Config) { c.IM.MaxGroupMembers = 1 }, "im.max_group_members"},
		{"retention", func(c *Config) { c.IM.Retention = -time.Second }, "im.retention"},
		{"trim every", func(c *Config) { c.IM.TrimEvery = 2 * time.Hour }, "im.trim_every"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("got %v, want an error naming %s", err, tc.field)
			}
		})
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	c, err := Decode(strings.NewReader("im:\n  max_body: 4KiB\n  rate_burst: 1000\n  retention: 2160h\n"))
	if err != nil || c.IM.MaxBody != 4<<10 || c.IM.RateBurst != 1000 || c.IM.RatePerSec != 100 || c.IM.Retention != 90*24*time.Hour {
		t.Fatalf("decode: %v %+v", err, c.IM)
	}
}
