//go:build !linux

package sasldb

import "io/fs"

const openFlags = 0

// stamp identifies one version of the file; see stat_linux.go. Elsewhere
// only the portable fields are used, and the racy window in DB covers
// changes they miss.
type stamp struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64
}

func stampOf(fi fs.FileInfo) stamp {
	return stamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
}
