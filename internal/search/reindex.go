package search

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// Reindex rebuilds the index of dir from o.Source: it indexes everything
// into dir+".new" (its cursor persisted with each batch, so a run that
// was interrupted resumes where it stopped), then replaces dir with it.
// The broker must not be running (the store is opened exclusively). It
// returns how many events it read in this run.
func Reindex(ctx context.Context, dir string, o Options) (int, error) {
	tmp := dir + ".new"
	x, err := Open(tmp, o)
	if err != nil {
		return 0, err
	}
	total := 0
	for {
		n, err := x.CatchUp(ctx)
		total += n
		if err != nil {
			return total, errors.Join(err, x.Close())
		}
		if n == 0 {
			break
		}
	}
	if err := x.Close(); err != nil {
		return total, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return total, fmt.Errorf("search: remove old index: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return total, fmt.Errorf("search: put new index in place: %w", err)
	}
	return total, nil
}
