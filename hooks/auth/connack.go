package auth

import (
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// MQTT 3.1.1 CONNACK return codes (MQTT 3.1.1 §3.2.2.3).
const (
	v3UnacceptableVersion = 0x01
	v3IdentifierRejected  = 0x02
	v3ServerUnavailable   = 0x03
	v3BadCredentials      = 0x04
	v3NotAuthorized       = 0x05
)

// v3Codes maps MQTT 5 CONNACK reason codes to MQTT 3.1.1 return codes. It
// is the one place where refusals become 3.1.1 codes: OnConnect uses it
// for Tern's refusals and OnPacketEncode for the CONNACKs mochi sends
// itself (a malformed CONNECT, a full server). Anything not listed is
// "not authorized": a 3.1.1 client never sees a code above 5.
var v3Codes = map[byte]byte{
	packets.ErrUnsupportedProtocolVersion.Code: v3UnacceptableVersion,
	packets.ErrClientIdentifierNotValid.Code:   v3IdentifierRejected,
	packets.ErrServerUnavailable.Code:          v3ServerUnavailable,
	packets.ErrServerBusy.Code:                 v3ServerUnavailable,
	packets.ErrBadUsernameOrPassword.Code:      v3BadCredentials,
	packets.ErrMalformedUsername.Code:          v3BadCredentials,
	packets.ErrMalformedPassword.Code:          v3BadCredentials,
	packets.ErrNotAuthorized.Code:              v3NotAuthorized,
	packets.ErrConnectionRateExceeded.Code:     v3NotAuthorized,
}

// v3Code returns the MQTT 3.1.1 return code for an MQTT 5 reason code.
func v3Code(code byte) byte {
	if code < packets.ErrUnspecifiedError.Code {
		return code
	}
	if c, ok := v3Codes[code]; ok {
		return c
	}
	return v3NotAuthorized
}

// OnPacketRead treats a CONNECT with the password flag set and an empty
// password as one without a password. Both MQTT versions allow an empty
// password (mosquitto_pub -P "" sends one), but mochi rejects it as a
// protocol error before any hook runs, which a 3.1.1 client saw as
// CONNACK 130. Now the CONNECT reaches OnConnect and is refused there
// with "bad user name or password" like any other wrong password.
func (h *Hook) OnPacketRead(_ *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type == packets.Connect && pk.Connect.PasswordFlag && len(pk.Connect.Password) == 0 {
		pk.Connect.PasswordFlag = false
	}
	return pk, nil
}

// OnPacketEncode rewrites the reason code of a refusing CONNACK to a
// 3.1.1 client into a 3.1.1 return code.
func (h *Hook) OnPacketEncode(_ *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type == packets.Connack && pk.ProtocolVersion < 5 {
		pk.ReasonCode = v3Code(pk.ReasonCode)
	}
	return pk
}
