package firmwaresim_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/tern-im/tern/broker"
	"github.com/tern-im/tern/broker/brokertest"
	firmwaresim "github.com/tern-im/tern/firmware-sim"
)

// TestFileScenario: devices upload files over links that drop; every file
// arrives intact and comes back intact, and the drops cost resends.
func TestFileScenario(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	f, _ := provision(t, b, filepath.Join(t.TempDir(), "devices.json"), 8, 0)
	ctx, cancel := context.WithTimeout(context.Background(), brokertest.Timeout)
	defer cancel()
	rep, err := firmwaresim.RunFiles(ctx, firmwaresim.FileOptions{
		MQTT: b.Addr(broker.ListenerMQTT), Fleet: f, Devices: 8, Size: 48 << 10, MaxPkt: 2048,
		Link:     firmwaresim.LinkOptions{Drop: 0.5, Latency: 2 * time.Millisecond, Bandwidth: 64 << 10},
		Deadline: brokertest.Timeout, RPCTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(rep.Text())
	if rep.Uploaded != 8 || rep.Downloaded != 8 || rep.Corrupted != 0 || rep.Missing != 0 {
		t.Fatalf("files lost or damaged:\n%s", rep.Text())
	}
	if rep.Sent < rep.Payload || rep.Payload != 8*48<<10 {
		t.Fatalf("accounting: sent %d of payload %d", rep.Sent, rep.Payload)
	}
}
