package main

// A small JSON Lines writer: one flat object per line, built in a reused buffer (the hot
// path writes a few hundred thousand lines a second, so no reflection and no maps).

import (
	"bufio"
	"strconv"
	"unicode/utf8"
)

type lineWriter struct {
	w     *bufio.Writer
	buf   []byte
	first bool // no field written yet at the current nesting level
}

// begin starts a line {"t":kind,...}.
func (l *lineWriter) begin(kind string) *lineWriter {
	l.buf = append(l.buf[:0], `{"t":`...)
	l.buf = appendString(l.buf, kind)
	l.first = false
	return l
}

func (l *lineWriter) key(k string) {
	if !l.first {
		l.buf = append(l.buf, ',')
	}
	l.first = false
	l.buf = appendString(l.buf, k)
	l.buf = append(l.buf, ':')
}

func (l *lineWriter) int(k string, v int64) *lineWriter {
	l.key(k)
	l.buf = strconv.AppendInt(l.buf, v, 10)
	return l
}

func (l *lineWriter) uint(k string, v uint64) *lineWriter {
	l.key(k)
	l.buf = strconv.AppendUint(l.buf, v, 10)
	return l
}

func (l *lineWriter) str(k, v string) *lineWriter {
	l.key(k)
	l.buf = appendString(l.buf, v)
	return l
}

func (l *lineWriter) boolean(k string, v bool) *lineWriter {
	l.key(k)
	l.buf = strconv.AppendBool(l.buf, v)
	return l
}

func (l *lineWriter) ints(k string, v []int) *lineWriter {
	l.key(k)
	l.buf = append(l.buf, '[')
	for i, x := range v {
		if i > 0 {
			l.buf = append(l.buf, ',')
		}
		l.buf = strconv.AppendInt(l.buf, int64(x), 10)
	}
	l.buf = append(l.buf, ']')
	return l
}

// object opens a nested object under k; close ends it.
func (l *lineWriter) object(k string) {
	l.key(k)
	l.buf = append(l.buf, '{')
	l.first = true
}

func (l *lineWriter) close() {
	l.buf = append(l.buf, '}')
	l.first = false
}

// finish ends the line and hands it to the buffered writer (errors surface at Flush).
func (l *lineWriter) finish() {
	l.buf = append(l.buf, '}', '\n')
	_, _ = l.w.Write(l.buf)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
