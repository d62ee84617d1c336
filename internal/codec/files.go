package codec

// Arguments and results of the file.* RPC ops (PROTOCOL §11).

// FilePutArgs are the arguments of file.put.
type FilePutArgs struct {
	N  string `json:"n,omitempty" cbor:"n,omitempty"`
	Z  int64  `json:"z" cbor:"z"`
	CT string `json:"ct,omitempty" cbor:"ct,omitempty"`
	H  Bin    `json:"h" cbor:"h"`
}

// FilePutResult is the result of file.put: the chunk size to send and the
// ranges of chunk indexes already stored.
type FilePutResult struct {
	FID   string   `json:"fid" cbor:"fid"`
	Chunk int      `json:"chunk" cbor:"chunk"`
	Have  [][2]int `json:"have" cbor:"have"`
}

// FileArgs are the arguments of file.commit, file.stat and file.get
// (From and Cnt: file.get only).
type FileArgs struct {
	FID  string `json:"fid" cbor:"fid"`
	From int    `json:"from,omitempty" cbor:"from,omitempty"`
	Cnt  int    `json:"cnt,omitempty" cbor:"cnt,omitempty"`
}

// FileInfo describes a file: the result of file.commit, and with
// Committed, Chunk and Have that of file.stat.
type FileInfo struct {
	FID       string   `json:"fid" cbor:"fid"`
	N         string   `json:"n" cbor:"n"`
	Z         int64    `json:"z" cbor:"z"`
	CT        string   `json:"ct,omitempty" cbor:"ct,omitempty"`
	H         Bin      `json:"h" cbor:"h"`
	W         int      `json:"w,omitempty" cbor:"w,omitempty"`
	HH        int      `json:"hh,omitempty" cbor:"hh,omitempty"`
	Committed *bool    `json:"committed,omitempty" cbor:"committed,omitempty"`
	Chunk     int      `json:"chunk,omitempty" cbor:"chunk,omitempty"`
	Have      [][2]int `json:"have,omitempty" cbor:"have,omitempty"`
}

// FileGetResult is the result of file.get: chunks From … From+Cnt-1 (of
// Count, each Chunk bytes but the last) follow on the device's f topic.
type FileGetResult struct {
	FID   string `json:"fid" cbor:"fid"`
	Z     int64  `json:"z" cbor:"z"`
	H     Bin    `json:"h" cbor:"h"`
	CT    string `json:"ct" cbor:"ct"`
	Chunk int    `json:"chunk" cbor:"chunk"`
	Count int    `json:"count" cbor:"count"`
	From  int    `json:"from" cbor:"from"`
	Cnt   int    `json:"cnt" cbor:"cnt"`
}
