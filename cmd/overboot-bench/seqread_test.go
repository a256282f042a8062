package main

import (
	"strings"
	"testing"

	"github.com/overboot/overboot/vmtest"
)

func TestParseSeq(t *testing.T) {
	line := func(s string) vmtest.Line { return vmtest.Line{Text: s} }
	const size = 222412800
	good := []vmtest.Line{
		line("OVERBOOT-BENCH-SEQ http 222413001 bytes (222 MB, 212 MiB) copied, 4.5 s, 49.4 MB/s"),
		line("OVERBOOT-BENCH-SEQ dev 222412800 bytes (222 MB, 212 MiB) copied, 9 s, 24.7 MB/s"),
		line("OVERBOOT-BENCH-SEQ raw 222412800 bytes (222 MB, 212 MiB) copied, 5 s, 44.5 MB/s"),
	}
	r, err := parseSeq(good, size)
	if err != nil || r.HTTP != 222413001/4.5 || r.Dev != size/9.0 || r.Raw != size/5.0 {
		t.Errorf("parseSeq = %+v, %v", r, err)
	}
	for name, lines := range map[string][]vmtest.Line{
		"short device read": {good[0], line("OVERBOOT-BENCH-SEQ dev 4096 bytes (4.1 kB) copied, 0.1 s, 41 kB/s"), good[2]},
		"short download":    {line("OVERBOOT-BENCH-SEQ http 1000 bytes (1 kB) copied, 0.1 s, 10 kB/s"), good[1], good[2]},
		"short raw read":    {good[0], good[1], line("OVERBOOT-BENCH-SEQ raw 4096 bytes (4.1 kB) copied, 0.1 s, 41 kB/s")},
		"two only":          good[:2],
		"dd failed":         {good[0], line("OVERBOOT-BENCH-SEQ dev dd: error reading '/dev/dm-0': Input/output error"), good[2]},
	} {
		if _, err := parseSeq(lines, size); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if !strings.Contains(seqScript, `HTTP/1.0\r\nHost: 10.0.2.100\r\n\r\n`) || !strings.Contains(benchInit, seqScriptPath) {
		t.Errorf("the scripts lost their request or their call")
	}
}
