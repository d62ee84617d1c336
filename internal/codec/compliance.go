package codec

// ConvSetArgs are the arguments of `conv.set` (PROTOCOL §16): the
// conversation's own retention in seconds; 0 returns it to the server
// default.
type ConvSetArgs struct {
	CV        string `json:"cv" cbor:"cv"`
	Retention *int64 `json:"retention" cbor:"retention"`
}

// ConvSetResult is the result of `conv.set`.
type ConvSetResult struct {
	CV        string `json:"cv" cbor:"cv"`
	Retention int64  `json:"retention" cbor:"retention"`
}

// Retention bounds of conv.set, in seconds: the trimmer runs once a
// minute, and a century is forever enough.
const (
	MinRetention = 60
	MaxRetention = 100 * 365 * 24 * 3600
)
