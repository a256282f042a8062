package iscsi

import (
	"context"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
)

// conformanceFamilies are the iscsi-test-cu families for what the target
// implements; each must pass without a failure. Families with known
// failures (SCSI.Inquiry version descriptors, iSCSI.iSCSIdatasn,
// iSCSI.iSCSIResiduals, iSCSI.iSCSITMF async abort) are counted by
// `make bench ONLY=iscsi`, beside tgtd.
var conformanceFamilies = []string{
	"SCSI.Read6", "SCSI.Read10", "SCSI.Read16", "SCSI.ReadCapacity10", "SCSI.ReadCapacity16",
	"SCSI.TestUnitReady", "SCSI.Write10", "SCSI.Write16", "SCSI.Verify10", "SCSI.Verify16",
	"SCSI.ModeSense6", "SCSI.Mandatory", "SCSI.PreventAllow", "SCSI.StartStopUnit", "SCSI.NoMedia",
	"iSCSI.iSCSIcmdsn",
}

var cuTestsRE = regexp.MustCompile(`(?m)^\s+tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)`)

func TestIscsiTestCu(t *testing.T) {
	needTool(t, "iscsi-test-cu")
	for _, fam := range conformanceFamilies {
		t.Run(fam, func(t *testing.T) {
			// A fresh writable LUN: the write tests change it.
			b, err := CreateSparse(filepath.Join(t.TempDir(), "lun.img"), 64<<20)
			if err != nil {
				t.Fatal(err)
			}
			s := New(nil)
			if err := s.AddTarget(TargetConfig{IQN: testIQN, LUNs: []Backing{b}, CHAP: CHAP{User: testUser, Secret: testPass}}); err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { s.Serve(ctx, ln); close(done) }()
			defer func() { cancel(); <-done; b.Close() }()
			url := "iscsi://" + testUser + "%" + testPass + "@" + ln.Addr().String() + "/" + testIQN + "/0"
			out, _ := run(t, "iscsi-test-cu", "-d", "-t", fam, url)
			m := cuTestsRE.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("no summary from iscsi-test-cu:\n%s", out)
			}
			ran, _ := strconv.Atoi(m[2])
			failed, _ := strconv.Atoi(m[4])
			if ran == 0 || failed != 0 {
				t.Errorf("%s: %d ran, %d failed:\n%s", fam, ran, failed, out)
			}
		})
	}
}
