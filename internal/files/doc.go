// Package files stores the files and images of PROTOCOL §11 and §15:
// content-addressed blobs on disk under {data}/files (deduplicated by
// SHA-256, never in Badger's value log), resumable uploads (chunked over
// MQTT with a have-list, appended over HTTP with tus), the metadata and
// explicit reference counts of each file behind the Meta port, per-user
// quotas, image sniffing and cached JPEG thumbnails, and a collector that
// removes expired uploads and unreferenced files.
//
// Layout of {data}/files:
//
//	blobs/ab/cd/abcd…(64 hex)   committed content, named by its SHA-256
//	thumbs/ab/abcd….jpg          thumbnail of an image blob, made once
//	up/{fid}                     an upload in progress (sparse for MQTT uploads)
//	up/{fid}.have                one byte per chunk of an MQTT upload: 1 = stored
//
// Nothing here knows MQTT or HTTP: hooks/files and internal/web adapt it.
package files
