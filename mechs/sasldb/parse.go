package sasldb

import (
	"encoding/binary"
	"fmt"
)

// The on-disk layout below is Berkeley DB's (dbinc/db_page.h, hash/hash.h in
// DB 5.3). Only what a DB_HASH file written by saslpasswd2 can contain is
// supported; everything else is refused rather than guessed at.
const (
	hashMagic  = 0x061561
	btreeMagic = 0x053162
	queueMagic = 0x042253
	heapMagic  = 0x074582

	// page types
	pHashUnsorted = 2
	pOverflow     = 7
	pHashMeta     = 8
	pHash         = 13

	// hash item types: the first byte of each item on a hash page
	hKeyData   = 1
	hDuplicate = 2
	hOffpage   = 3
	hOffdup    = 4

	// generic page header: lsn(8) pgno(4) prev(4) next(4) entries(2)
	// hf_offset(2) level(1) type(1)
	pageHeaderSize = 26
	// a checksummed file pads the header by 2 and stores a 4-byte checksum
	// before the index array (PG_CHKSUM)
	chksumHeaderSize = pageHeaderSize + 6
	// HOFFPAGE: type(1) unused(3) pgno(4) tlen(4)
	offpageSize = 12

	// DBMETA.metaflags
	metaChksum       = 0x01
	metaPartRange    = 0x02
	metaPartCallback = 0x04
	// HMETA.dbmeta.flags: DB_HASH_SUBDB
	hashSubDB = 0x02

	minPageSize = 512
	maxPageSize = 64 * 1024
	nCached     = 32 // HMETA.spares entries
)

// parser holds one file while it is being walked. name only labels errors.
type parser struct {
	name     string
	b        []byte
	order    binary.ByteOrder
	pageSize int
	npages   int
	overhead int    // where a page's index array or overflow data starts
	visited  []bool // every page is read at most once: no loops, bounded work
	// unvisited counts pages not yet read, to refuse an overflow length that
	// the rest of the file cannot hold before allocating for it
	unvisited int
}

func (p *parser) errf(format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrFormat, p.name, fmt.Sprintf(format, args...))
}

// parseDB reads every key/data pair of a Berkeley DB hash file held in b.
func parseDB(name string, b []byte) (map[string]string, error) {
	p := &parser{name: name, b: b}
	if err := p.meta(); err != nil {
		return nil, err
	}
	return p.buckets()
}

// meta checks the metadata page (page 0) and sets the byte order, page
// size and header size the other pages are read with.
func (p *parser) meta() error {
	if len(p.b) < minPageSize {
		return p.errf("file is %d bytes, too short for a Berkeley DB file", len(p.b))
	}
	switch {
	case binary.LittleEndian.Uint32(p.b[12:]) == hashMagic:
		p.order = binary.LittleEndian
	case binary.BigEndian.Uint32(p.b[12:]) == hashMagic:
		// written on a machine of the other byte order (or by db_load -c
		// db_lorder=...): every integer in the file is swapped
		p.order = binary.BigEndian
	default:
		for _, o := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
			switch o.Uint32(p.b[12:]) {
			case btreeMagic:
				return p.errf("a Berkeley DB btree database, not hash")
			case queueMagic:
				return p.errf("a Berkeley DB queue database, not hash")
			case heapMagic:
				return p.errf("a Berkeley DB heap database, not hash")
			}
		}
		return p.errf("not a Berkeley DB hash file (magic %#x)", binary.LittleEndian.Uint32(p.b[12:]))
	}
	if v := p.u32(p.b, 16); v != 8 && v != 9 {
		return p.errf("hash version %d is not supported (Berkeley DB 4.6 to 6.x write 8 or 9)", v)
	}
	ps := p.u32(p.b, 20)
	if ps < minPageSize || ps > maxPageSize || ps&(ps-1) != 0 {
		return p.errf("invalid page size %d", ps)
	}
	p.pageSize = int(ps)
	if len(p.b)%p.pageSize != 0 {
		return p.errf("file size %d is not a multiple of the page size %d (truncated?)", len(p.b), p.pageSize)
	}
	p.npages = len(p.b) / p.pageSize
	if alg := p.b[24]; alg != 0 {
		return p.errf("the database is encrypted (algorithm %d)", alg)
	}
	if t := p.b[25]; t != pHashMeta {
		return p.errf("page 0 has type %d, not hash metadata", t)
	}
	mf := p.b[26]
	if mf&(metaPartRange|metaPartCallback) != 0 {
		return p.errf("partitioned databases are not supported")
	}
	p.overhead = pageHeaderSize
	if mf&metaChksum != 0 {
		// The checksums are not verified: the structure checks below catch
		// damage that matters, and the layout is all that changes.
		p.overhead = chksumHeaderSize
	}
	if f := p.u32(p.b, 48); f&hashSubDB != 0 {
		return p.errf("the file holds several databases; sasldb uses one")
	}
	p.visited = make([]bool, p.npages)
	p.visited[0] = true
	p.unvisited = p.npages - 1
	return nil
}

func (p *parser) u32(b []byte, off int) uint32 { return p.order.Uint32(b[off:]) }
func (p *parser) u16(b []byte, off int) int    { return int(p.order.Uint16(b[off:])) }

// page returns page n after checking it is inside the file and not read
// before.
func (p *parser) page(n uint64) ([]byte, error) {
	if n == 0 || n >= uint64(p.npages) {
		return nil, p.errf("reference to page %d, outside the file's %d pages", n, p.npages)
	}
	if p.visited[n] {
		return nil, p.errf("page %d is reached twice (a loop or a shared page)", n)
	}
	p.visited[n] = true
	p.unvisited--
	off := int(n) * p.pageSize
	return p.b[off : off+p.pageSize], nil
}

// buckets walks every bucket's page chain, the way DB->get would find the
// pages, so that stale pages outside the table are never read.
func (p *parser) buckets() (map[string]string, error) {
	maxBucket := uint64(p.u32(p.b, 72))
	// Each bucket has its own first page: a larger table than the file can
	// hold is damage, and checking it bounds the loop below.
	if maxBucket+1 >= uint64(p.npages) {
		return nil, p.errf("%d buckets do not fit in %d pages", maxBucket+1, p.npages)
	}
	m := make(map[string]string)
	for bucket := uint64(0); bucket <= maxBucket; bucket++ {
		// BS_TO_PAGE: bucket + spares[log2(bucket+1)]
		idx := log2(bucket + 1)
		if idx >= nCached {
			return nil, p.errf("bucket %d is beyond the spares table", bucket)
		}
		pgno := bucket + uint64(p.u32(p.b, 96+4*idx))
		if err := p.chain(pgno, bucket, m); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// log2 is __db_log2: the smallest i with 1<<i >= n.
func log2(n uint64) int {
	i := 0
	for limit := uint64(1); limit < n; limit <<= 1 {
		i++
	}
	return i
}

// chain reads one bucket: its first page and the pages linked by next_pgno.
func (p *parser) chain(pgno, bucket uint64, m map[string]string) error {
	for pgno != 0 {
		pg, err := p.page(pgno)
		if err != nil {
			return fmt.Errorf("%w (bucket %d)", err, bucket)
		}
		self := p.u32(pg, 8)
		if self == 0 {
			// A page allocated with its doubling but never written reads
			// as zeros; Berkeley DB (__ham_pgin) takes a page whose pgno
			// is 0 for an empty hash page.
			return nil
		}
		if uint64(self) != pgno {
			return p.errf("page %d says it is page %d", pgno, self)
		}
		if typ := pg[25]; typ != pHash && typ != pHashUnsorted {
			return p.errf("page %d in bucket %d has type %d, not a hash page", pgno, bucket, typ)
		}
		if err := p.items(pgno, pg, m); err != nil {
			return err
		}
		pgno = uint64(p.u32(pg, 16))
	}
	return nil
}

// items reads the key/data pairs on one hash page. Item i runs from its
// index entry to the previous item's start (the page end for item 0).
func (p *parser) items(pgno uint64, pg []byte, m map[string]string) error {
	n := p.u16(pg, 20)
	if n%2 != 0 {
		return p.errf("page %d has an odd number of items (%d)", pgno, n)
	}
	lo := p.overhead + 2*n // the index array ends here; items live above
	if lo > p.pageSize {
		return p.errf("page %d: index of %d items overflows the page", pgno, n)
	}
	end := p.pageSize
	var key string
	for i := 0; i < n; i++ {
		off := p.u16(pg, p.overhead+2*i)
		if off < lo || off >= end {
			return p.errf("page %d: item %d at offset %d is outside %d..%d", pgno, i, off, lo, end)
		}
		v, err := p.item(pgno, i, pg[off:end])
		if err != nil {
			return err
		}
		end = off
		if i%2 == 0 {
			key = v
			continue
		}
		if _, dup := m[key]; dup {
			return p.errf("page %d: key %q appears twice", pgno, printable(key))
		}
		m[key] = v
	}
	return nil
}

// item decodes one key or data item, following an overflow chain if the item
// is stored off the page.
func (p *parser) item(pgno uint64, i int, it []byte) (string, error) {
	switch it[0] {
	case hKeyData:
		return string(it[1:]), nil
	case hOffpage:
		if len(it) != offpageSize {
			return "", p.errf("page %d: item %d: off-page reference of %d bytes", pgno, i, len(it))
		}
		return p.overflow(uint64(p.u32(it, 4)), p.u32(it, 8))
	case hDuplicate, hOffdup:
		return "", p.errf("page %d: item %d: duplicate data items are not supported (saslpasswd2 never writes them)", pgno, i)
	}
	return "", p.errf("page %d: item %d has unknown type %d", pgno, i, it[0])
}

// overflow reads an item of tlen bytes stored on a chain of overflow pages.
func (p *parser) overflow(pgno uint64, tlen uint32) (string, error) {
	room := uint64(p.unvisited) * uint64(p.pageSize-p.overhead)
	if uint64(tlen) > room {
		return "", p.errf("overflow item of %d bytes at page %d cannot fit in the rest of the file", tlen, pgno)
	}
	buf := make([]byte, 0, tlen)
	for pgno != 0 {
		pg, err := p.page(pgno)
		if err != nil {
			return "", err
		}
		if self := p.u32(pg, 8); uint64(self) != pgno {
			return "", p.errf("page %d says it is page %d", pgno, self)
		}
		if t := pg[25]; t != pOverflow {
			return "", p.errf("page %d has type %d, not overflow", pgno, t)
		}
		n := p.u16(pg, 22) // OV_LEN: hf_offset holds the bytes used on an overflow page
		if n == 0 || p.overhead+n > p.pageSize || len(buf)+n > int(tlen) {
			return "", p.errf("overflow page %d holds %d bytes, inconsistent with the item's %d", pgno, n, tlen)
		}
		buf = append(buf, pg[p.overhead:p.overhead+n]...)
		pgno = uint64(p.u32(pg, 16))
	}
	if len(buf) != int(tlen) {
		return "", p.errf("overflow chain holds %d bytes, the item says %d", len(buf), tlen)
	}
	return string(buf), nil
}

// printable shows a key in an error without its NULs and with no more than
// a line's worth of it.
func printable(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == 0 {
			b[i] = '|'
		}
	}
	if len(b) > 80 {
		b = append(b[:77], "..."...)
	}
	return string(b)
}
