package config

import (
	"strings"
	"testing"
	"time"
)

func TestValidateFiles(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		mod   func(*Files)
		field string
	}{
		{"max size", func(f *Files) { f.MaxSize = 0 }, "files.max_size"},
		{"quota", func(f *Files) { f.Quota = -1 }, "files.quota"},
		{"expiry", func(f *Files) { f.UploadExpiry = 0 }, "files.upload_expiry"},
		{"sweep", func(f *Files) { f.Sweep = -time.Second }, "files.sweep"},
		{"pixels", func(f *Files) { f.MaxPixels = 0 }, "files.max_pixels"},
		{"rate", func(f *Files) { f.UploadRate = -1 }, "files.upload_rate"},
		{"burst below a packet", func(f *Files) { f.UploadBurst = 1 << 10 }, "files.upload_burst"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(&c.Files)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("got %v, want an error naming %s", err, tc.field)
			}
		})
	}
	c, err := Decode(strings.NewReader("files:\n  max_size: 10MiB\n  quota: 0\n  upload_expiry: 1h\n"))
	if err != nil || c.Files.MaxSize != 10<<20 || c.Files.Quota != 0 || c.Files.UploadExpiry != time.Hour || c.Files.MaxPixels != 24_000_000 {
		t.Fatalf("decode: %v %+v", err, c.Files)
	}
}
