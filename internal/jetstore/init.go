package jetstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// kvConfig is the stream of KV bucket b: what nats.go gives a bucket
// (history 1). Tern reads it from the stream leader, and by direct gets
// only while the leader is away (see leaderKV, route).
func kvConfig(b string, replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name: "KV_" + b, Subjects: []string{"$KV." + b + ".>"},
		MaxMsgsPerSubject: 1, MaxBytes: -1, MaxMsgSize: -1, MaxMsgs: -1, MaxConsumers: -1,
		Storage: jetstream.FileStorage, Replicas: replicas,
		AllowRollup: true, DenyDelete: true, Duplicates: 2 * time.Minute, Discard: jetstream.DiscardNew,
		AllowDirect: true,
	}
}

// Asset is one JetStream stream of Tern's: the log stream, a KV
// bucket's stream, the upload stream or the object store's stream.
type Asset struct {
	// Stream is the stream's name (KV_{bucket} for a bucket).
	Stream string
	// Kind is "stream", "kv" or "objects".
	Kind     string
	Replicas int
	// Created is true when Init made it, false when it was there.
	Created bool
}

// Assets lists the streams Tern uses, in the order Init makes them.
func Assets() []string {
	out := []string{LogStream}
	for _, b := range buckets {
		out = append(out, "KV_"+b)
	}
	return append(out, "KV_"+FilesBucket, UploadStream, "OBJ_"+BlobBucket)
}

// Init creates the log stream and every KV bucket that is missing, with
// replicas replicas, as every node's Open does, and reports each
// (tern cluster init, for an existing NATS cluster). Running it again
// creates nothing.
func Init(ctx context.Context, nc *nats.Conn, replicas int) ([]Asset, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstore: %w", err)
	}
	cfgs := []jetstream.StreamConfig{LogConfig(replicas)}
	for _, b := range buckets {
		cfgs = append(cfgs, kvConfig(b, replicas))
	}
	// The file store's (OpenFiles makes the same).
	cfgs = append(cfgs, filesKVConfig(replicas), uploadConfig(replicas), blobConfig(replicas))
	var out []Asset
	for _, cfg := range cfgs {
		a := Asset{Stream: cfg.Name, Kind: "kv", Replicas: cfg.Replicas}
		switch cfg.Name {
		case LogStream, UploadStream:
			a.Kind = "stream"
		case "OBJ_" + BlobBucket:
			a.Kind = "objects"
		}
		err := retry(ctx, func(ctx context.Context) error {
			st, err := js.Stream(ctx, cfg.Name)
			switch {
			case err == nil:
				a.Created, a.Replicas = false, st.CachedInfo().Config.Replicas
				return nil
			case !errors.Is(err, jetstream.ErrStreamNotFound):
				return err
			}
			_, err = js.CreateStream(ctx, cfg)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				return nil // made by a node starting at the same time
			}
			a.Created = err == nil
			return err
		})
		if err != nil {
			return out, fmt.Errorf("jetstore: create %s: %w", cfg.Name, err)
		}
		out = append(out, a)
	}
	return out, nil
}
