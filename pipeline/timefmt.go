package pipeline

import (
	"strconv"
	"time"
)

// Event times are RFC 3339 in UTC with exactly three fractional digits on
// output ("2024-05-01T12:34:56.789Z"). On input any RFC 3339 time with an
// optional fraction and a zone of Z or ±hh:mm is accepted (upper-case T and Z,
// as Go's time package requires) and stored in UTC truncated to the
// millisecond. Both directions are written by hand: time.Parse and
// time.Format cost more than the rest of an event together.

// parseRFC3339 parses YYYY-MM-DDTHH:MM:SS[.frac](Z|±hh:mm).
func parseRFC3339(s []byte) (time.Time, bool) {
	if len(s) < len("2006-01-02T15:04:05Z") {
		return time.Time{}, false
	}
	ok := true
	num := func(b []byte, lo, hi int) int {
		n := 0
		for _, c := range b {
			if c < '0' || c > '9' {
				ok = false
				return 0
			}
			n = n*10 + int(c-'0')
		}
		if n < lo || n > hi {
			ok = false
		}
		return n
	}
	year := num(s[0:4], 0, 9999)
	month := num(s[5:7], 1, 12)
	if !ok {
		return time.Time{}, false
	}
	day := num(s[8:10], 1, daysIn(month, year))
	hour := num(s[11:13], 0, 23)
	minute := num(s[14:16], 0, 59)
	sec := num(s[17:19], 0, 59)
	if !ok || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	s = s[19:]

	// Fraction: keep milliseconds, ignore (truncate) finer digits.
	ms := 0
	if s[0] == '.' {
		i := 1
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			if i <= 3 {
				ms = ms*10 + int(s[i]-'0')
			}
			i++
		}
		if i == 1 {
			return time.Time{}, false
		}
		for j := i; j <= 3; j++ { // fewer than three digits: scale up
			ms *= 10
		}
		s = s[i:]
	}

	offset := 0
	switch {
	case len(s) == 1 && s[0] == 'Z':
	case len(s) == 6 && (s[0] == '+' || s[0] == '-') && s[3] == ':':
		oh := num(s[1:3], 0, 23)
		om := num(s[4:6], 0, 59)
		if !ok {
			return time.Time{}, false
		}
		offset = oh*3600 + om*60
		if s[0] == '-' {
			offset = -offset
		}
	default:
		return time.Time{}, false
	}

	days := daysFromCivil(year, month, day)
	unix := days*86400 + int64(hour*3600+minute*60+sec-offset)
	return time.Unix(unix, int64(ms)*int64(time.Millisecond)).UTC(), true
}

func isLeap(y int) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

func daysIn(month, year int) int {
	switch month {
	case 2:
		if isLeap(year) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil returns the number of days since 1970-01-01 of a proleptic
// Gregorian date (Howard Hinnant's algorithm).
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12 // March = 0
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}

// civilFromDays is the inverse of daysFromCivil.
func civilFromDays(z int64) (y, m, d int) {
	z += 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = int(doy - (153*mp+2)/5 + 1)
	m = int(mp + 3)
	if m > 12 {
		m -= 12
	}
	y = int(yoe + era*400)
	if m <= 2 {
		y++
	}
	return y, m, d
}

// appendTime writes t as a JSON string in UTC with millisecond precision
// (truncated). A time outside the years 0000–9999, which RFC 3339 cannot
// express, is written as integer unix milliseconds instead, which Decode also
// accepts; Validate rejects such times.
func appendTime(dst []byte, t time.Time) []byte {
	ms := t.UnixMilli()
	days := ms / 86400000
	rem := ms % 86400000
	if rem < 0 {
		days--
		rem += 86400000
	}
	y, m, d := civilFromDays(days)
	if y < 0 || y > 9999 {
		return strconv.AppendInt(dst, ms, 10)
	}
	secs := int(rem / 1000)
	frac := int(rem % 1000)
	var b [26]byte // "2006-01-02T15:04:05.000Z"
	b[0] = '"'
	put4(b[1:], y)
	b[5] = '-'
	put2(b[6:], m)
	b[8] = '-'
	put2(b[9:], d)
	b[11] = 'T'
	put2(b[12:], secs/3600)
	b[14] = ':'
	put2(b[15:], secs/60%60)
	b[17] = ':'
	put2(b[18:], secs%60)
	b[20] = '.'
	b[21] = byte('0' + frac/100)
	put2(b[22:], frac%100)
	b[24] = 'Z'
	b[25] = '"'
	return append(dst, b[:]...)
}

func put2(b []byte, v int) {
	b[0] = byte('0' + v/10)
	b[1] = byte('0' + v%10)
}

func put4(b []byte, v int) {
	put2(b, v/100)
	put2(b[2:], v%100)
}
