// Package im is Tern's IM domain: the records (events, groups and their
// members with membership windows, markers, reactions, presence), the
// named errors with their protocol codes, the rules of conversations and
// groups, and the ports it needs from storage (ports.go) with the commit
// stream that carries committed events to delivery. It knows neither MQTT
// nor Badger: hooks/messaging adapts it to MQTT, internal/store
// implements its ports over Badger, and internal/im/imtest is the port
// conformance suite every implementation passes. docs/architecture.md
// draws the layers.
package im
