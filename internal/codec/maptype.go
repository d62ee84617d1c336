package codec

import "reflect"

// mapType makes CBOR maps decode into map[string]any, so opaque fields
// such as e2e re-encode as JSON.
var mapType = reflect.TypeOf(map[string]any(nil))
