package im

import (
	"encoding/json"

	"github.com/fxamacker/cbor/v2"
)

// Read limits of every CBOR decoder of stored and upstream data
// (internal/codec uses them too): nesting, array and map sizes.
const (
	MaxNestedLevels  = 16
	MaxArrayElements = 4096
	MaxMapPairs      = 4096
)

// DecOptions are the CBOR decoding options of all stored and upstream
// data: the read limits and no duplicate map keys (internal/codec adds
// its map type).
func DecOptions() cbor.DecOptions {
	return cbor.DecOptions{
		MaxNestedLevels:  MaxNestedLevels,
		MaxArrayElements: MaxArrayElements,
		MaxMapPairs:      MaxMapPairs,
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
	}
}

// e2eDecMode decodes the inner map of an E2E record.
var e2eDecMode = func() cbor.DecMode {
	m, err := DecOptions().DecMode()
	if err != nil {
		panic(err) // static options
	}
	return m
}()

// E2E holds the wrapped message keys of an end-to-end encrypted message
// (§12): recipient device "{uid}.{did}" → the message key wrapped for it
// (lowercase hex in JSON, a byte string in CBOR). Nothing else nests.
type E2E map[string]Bin

// UnmarshalJSON decodes the map and names the field in its error.
func (e *E2E) UnmarshalJSON(p []byte) error {
	var m map[string]Bin
	if err := json.Unmarshal(p, &m); err != nil {
		return &FieldError{Field: "e2e", Msg: "must map device ids to hex wrapped keys"}
	}
	*e = m
	return nil
}

// UnmarshalCBOR decodes the map and names the field in its error.
func (e *E2E) UnmarshalCBOR(p []byte) error {
	var m map[string][]byte
	if err := e2eDecMode.Unmarshal(p, &m); err != nil {
		return &FieldError{Field: "e2e", Msg: "must map device ids to byte-string wrapped keys"}
	}
	if m == nil {
		*e = nil
		return nil
	}
	out := make(E2E, len(m))
	for k, v := range m {
		out[k] = v
	}
	*e = out
	return nil
}

// FieldError is a schema violation of one named field.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }
