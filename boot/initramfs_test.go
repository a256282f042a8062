package boot

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestModuleFiles(t *testing.T) {
	files := []string{
		"lib/modules/6.1.0-56-amd64/kernel/drivers/net/mii.ko",
		"lib/modules/6.1.0-56-amd64/kernel/drivers/net/ethernet/realtek/8139cp.ko.xz",
	}
	b, err := FormatModuleFiles("driver segment 8139cp for 10ec:8139", files)
	if err != nil {
		t.Fatal(err)
	}
	want := "# driver segment 8139cp for 10ec:8139\n" + strings.Join(files, "\n") + "\n"
	if d := cmp.Diff(want, string(b)); d != "" {
		t.Errorf("list (-want +got):\n%s", d)
	}
	got, err := ParseModuleFiles(strings.NewReader(string(b) + "\n  # trailing comment\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(files, got); d != "" {
		t.Errorf("round trip (-want +got):\n%s", d)
	}
	for _, bad := range []string{
		"kernel/drivers/net/mii.ko",
		"lib/modules/6.1/../../../etc/passwd.ko",
		"lib/modules/6.1/kernel/mii.txt",
		"lib/modules/6.1/.ko",
		"lib/modules/mii.ko",
		"/lib/modules/6.1/mii.ko",
		"lib/modules/6.1//mii.ko",
	} {
		if _, err := FormatModuleFiles("", []string{bad}); err == nil {
			t.Errorf("FormatModuleFiles accepted %q", bad)
		}
		if _, err := ParseModuleFiles(strings.NewReader("# c\n" + bad + "\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("ParseModuleFiles(%q) error = %v, want one naming line 2", bad, err)
		}
	}
	if _, err := FormatModuleFiles("two\nlines", nil); err == nil {
		t.Errorf("a two-line comment was accepted")
	}
}

func FuzzParseModuleFiles(f *testing.F) {
	f.Add("# c\nlib/modules/6.1.0-56-amd64/kernel/drivers/net/mii.ko\n")
	f.Add("lib/modules/x/y.ko.zst # z\n\n")
	f.Fuzz(func(t *testing.T, in string) {
		files, err := ParseModuleFiles(strings.NewReader(in))
		if err != nil {
			return
		}
		b, err := FormatModuleFiles("", files)
		if err != nil {
			t.Fatalf("format %q: %v", files, err)
		}
		again, err := ParseModuleFiles(strings.NewReader(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(files, again); d != "" && len(files) > 0 {
			t.Fatalf("round trip (-want +got):\n%s", d)
		}
	})
}

// TestModuleSets pins the sets both sides of the initramfs read: the
// default list is the module list file's content (its order is in every
// default initramfs's bytes), and the deferred set is what the iSCSI steps
// load.
func TestModuleSets(t *testing.T) {
	want := []string{
		"squashfs", "loop", "overlay",
		"virtio_pci", "virtio_net",
		"iscsi_tcp", "sd_mod", "ext4", "crc32c_generic", "iscsi_ibft", "nbd", "dm_verity", "nfsv4", "nfsv3",
		"e1000", "e1000e", "igb",
	}
	if d := cmp.Diff(want, DefaultInitramfsModules()); d != "" {
		t.Errorf("DefaultInitramfsModules (-want +got):\n%s", d)
	}
	deferred := append(append(append(slices.Clone(ModulesISCSI), ModuleExt4), ModuleIBFT), append(slices.Clone(ModulesLazyRoot), ModuleNFSv4, ModuleNFSv3)...)
	slices.Sort(deferred)
	got := slices.Sorted(slices.Values(ModulesDeferred))
	if d := cmp.Diff(deferred, got); d != "" {
		t.Errorf("ModulesDeferred is not ModulesISCSI, ext4, iscsi_ibft, ModulesLazyRoot and the NFS clients (-want +got):\n%s", d)
	}
	all := DefaultInitramfsModules()
	all[0] = "changed"
	if DefaultInitramfsModules()[0] != "squashfs" || ModulesHTTPRoot[0] != "squashfs" {
		t.Errorf("DefaultInitramfsModules shares its backing array")
	}
}
