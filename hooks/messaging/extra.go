package messaging

import (
	"errors"

	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/internal/session"
)

// ExtraOp is an RPC op served by another feature (file.* today, issue
// 12): args decodes the request's arguments; after, when not nil, runs
// once the reply is sent. A refusal error may carry its protocol code
// (Status() int) and, for file.commit, the chunks stored (Have()).
type ExtraOp func(s *session.Session, args func(any) error) (result any, after func(), err error)

// callExtra runs op and turns a refusal that carries its own code into
// the domain's error, so the reply and the PUBACK reason are the same as
// for the service's ops.
func callExtra(d *device, op ExtraOp, args func(any) error) (r any, after func(), have [][2]int, err error) {
	r, after, err = op(d.s, args)
	if err == nil {
		return r, after, nil, nil
	}
	var h interface{ Have() [][2]int }
	if errors.As(err, &h) {
		have = h.Have()
	}
	var coded interface{ Status() int }
	if errors.As(err, &coded) {
		return nil, after, have, &im.Error{Code: coded.Status(), Msg: err.Error()}
	}
	return nil, after, have, err
}
