package broker_test

import (
	"regexp"
	"strconv"
	"testing"

	"github.com/tern-im/tern/broker/brokertest"
)

// TestSearchMetrics: the index's size on disk and its lag are exported.
func TestSearchMetrics(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	m := httpGet(t, b.HTTPURL()+"/metrics")
	size := regexp.MustCompile(`\ntern_search_index_bytes (\S+)\n`).FindStringSubmatch(m)
	if size == nil {
		t.Fatalf("no tern_search_index_bytes:\n%s", grepLines(m, "tern_search"))
	}
	if n, err := strconv.ParseFloat(size[1], 64); err != nil || n <= 0 {
		t.Errorf("tern_search_index_bytes %q", size[1])
	}
	if !regexp.MustCompile(`\ntern_search_lag_seconds 0\n`).MatchString(m) {
		t.Errorf("tern_search_lag_seconds is not 0 on an idle broker:\n%s", grepLines(m, "tern_search"))
	}
}
