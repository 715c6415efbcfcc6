// Package demo is the SFU's demo page, embedded in the binary.
package demo

import "embed"

// Files are the page's files: index.html, app.js, style.css.
//
//go:embed index.html app.js style.css
var Files embed.FS
