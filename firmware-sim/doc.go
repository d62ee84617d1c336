// Package firmwaresim simulates Tern devices to size a deployment and to
// catch regressions. Devices speak PROTOCOL.md exactly like firmware does,
// through the public client package (github.com/tern-im/tern/client):
// ClientID {uid}.{did} and a device token, SUBSCRIBE to the own device
// filter, RPC hello, sync until more is false, then send messages through
// a cmid outbox that is resent after every reconnect.
// Every delivery is checked end to end by an Accounting (loss, duplicates,
// order by seq and us) and timed in HDR histograms.
//
// The file scenario (RunFiles) has every device upload a file of a given
// size over its own flaky link with client.Upload, attach it to a DM to
// the next device's user, who downloads it with client.Download; it reports goodput, re-sent and resumed bytes, completion percentiles
// and any corrupted or missing file.
//
// Besides the IM scenarios (dm, group, presence, mixed) the package has a
// raw mode (plain MQTT pairs and fan-out, to compare brokers), an idle mode
// (many mostly idle connections and the broker's RSS per connection), and
// Links: an in-process TCP proxy per device that drops, delays, throttles
// and cuts connections on demand.
//
// The binary is cmd/firmware-sim.
package firmwaresim
