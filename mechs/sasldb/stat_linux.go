package sasldb

import (
	"io/fs"
	"syscall"
)

// O_NONBLOCK makes opening a FIFO return at once instead of waiting for a
// writer; readStable then refuses it. It changes nothing for regular files.
const openFlags = syscall.O_NONBLOCK

// stamp identifies one version of the file. saslpasswd2 rewrites pages in
// place, so the inode and often the size stay the same: mtime and ctime,
// to the nanosecond, are what change.
type stamp struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // ns since the epoch
}

func stampOf(fi fs.FileInfo) stamp {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return stamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	}
	return stamp{
		dev:   uint64(st.Dev), //nolint:unconvert // uint32 on some GOARCHes
		ino:   uint64(st.Ino), //nolint:unconvert
		size:  st.Size,
		mtime: st.Mtim.Nano(),
		ctime: st.Ctim.Nano(),
	}
}
