package files

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/gif" // registers GIF for DecodeConfig and Decode
	"image/jpeg"
	_ "image/png" // registers PNG
	"io"
	"net/http"

	"golang.org/x/image/draw"
	_ "golang.org/x/image/webp" // registers WebP
)

// sniffLen is how much of a file http.DetectContentType looks at.
const sniffLen = 512

// probe sniffs the content type of r's bytes and, for an image whose
// header decodes, its pixel size. Only the header is read: no pixel is
// decoded, so a decompression bomb costs nothing here. r is read from its
// start, once (the caller hashes what it reads).
func probe(r io.Reader) (ct string, w, h int, err error) {
	head := make([]byte, sniffLen)
	n, err := io.ReadFull(r, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", 0, 0, err
	}
	ct = http.DetectContentType(head[:n])
	switch ct {
	case "image/jpeg", "image/png", "image/gif", "image/webp":
	default:
		return ct, 0, 0, nil
	}
	cfg, _, err := image.DecodeConfig(bufio.NewReader(io.MultiReader(bytes.NewReader(head[:n]), r)))
	if err != nil {
		return ct, 0, 0, nil // sniffed as an image but its header is broken: just bytes
	}
	return ct, cfg.Width, cfg.Height, nil
}

// thumbnail decodes the image in src and writes a JPEG of it, scaled so
// that its longest side is at most side, to dst. The pixel count is
// checked from the header (image.DecodeConfig) before anything is
// decoded: beyond maxPixels it returns ErrTooManyPixels.
func thumbnail(src io.ReadSeeker, dst io.Writer, side int, maxPixels int64) error {
	cfg, _, err := image.DecodeConfig(bufio.NewReader(src))
	if err != nil {
		return ErrNotImage
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return ErrNotImage
	}
	if int64(cfg.Width)*int64(cfg.Height) > maxPixels {
		return ErrTooManyPixels
	}
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return err
	}
	img, _, err := image.Decode(bufio.NewReader(src))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotImage, err)
	}
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if w > side || h > side {
		if w >= h {
			w, h = side, max(1, h*side/w)
		} else {
			w, h = max(1, w*side/h), side
		}
	}
	// BiLinear averages over the whole source (its cost grows with the
	// source's pixels: 130 ms for 12 MP); ApproxBiLinear samples 4 pixels
	// per output pixel. A large image is first sampled down to twice the
	// thumbnail, then averaged: ~15 ms for 12 MP, without most of the
	// aliasing of sampling alone.
	from := img
	if b.Dx() > 2*w || b.Dy() > 2*h {
		mid := image.NewRGBA(image.Rect(0, 0, 2*w, 2*h))
		draw.ApproxBiLinear.Scale(mid, mid.Bounds(), img, b, draw.Src, nil)
		from, b = mid, mid.Bounds()
	}
	out := image.NewRGBA(image.Rect(0, 0, w, h))
	// JPEG has no alpha: transparent pixels show white.
	draw.Draw(out, out.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	draw.BiLinear.Scale(out, out.Bounds(), from, b, draw.Over, nil)
	return jpeg.Encode(dst, out, &jpeg.Options{Quality: 80})
}
