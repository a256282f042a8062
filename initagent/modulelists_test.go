package initagent

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

func TestReadSegments(t *testing.T) {
	const rel = "6.1.0-56-amd64"
	list := "# driver segment 8139cp+8139too for 10ec:8139\nlib/modules/" + rel + "/kernel/drivers/net/mii.ko\nlib/modules/" + rel + "/kernel/drivers/net/ethernet/realtek/8139cp.ko\n"
	fsys := fstest.MapFS{
		"etc/overboot/modules.d/8139cp+8139too": {Data: []byte(list)},
		"etc/overboot/modules.d/a-first":        {Data: []byte("lib/modules/" + rel + "/kernel/x.ko.xz\n")},
	}
	got, err := ReadModuleLists(fsys, ExtraModulesDir, rel)
	if err != nil {
		t.Fatal(err)
	}
	want := []ModuleList{
		{Name: "8139cp+8139too", Files: []string{"lib/modules/" + rel + "/kernel/drivers/net/mii.ko", "lib/modules/" + rel + "/kernel/drivers/net/ethernet/realtek/8139cp.ko"}},
		{Name: "a-first", Files: []string{"lib/modules/" + rel + "/kernel/x.ko.xz"}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("segments (-want +got):\n%s", d)
	}
	if segs, err := ReadModuleLists(fstest.MapFS{}, ExtraModulesDir, rel); err != nil || segs != nil {
		t.Errorf("no directory: %v %v", segs, err)
	}
	if _, err := ReadModuleLists(fsys, ExtraModulesDir, "6.1.0-99-amd64"); err == nil || !strings.Contains(err.Error(), "is for kernel "+rel+", the running kernel is 6.1.0-99-amd64") {
		t.Errorf("other release: %v", err)
	}
	fsys["etc/overboot/modules.d/bad"] = &fstest.MapFile{Data: []byte("lib/modules/" + rel + "/../../etc/passwd\n")}
	if _, err := ReadModuleLists(fsys, ExtraModulesDir, rel); err == nil || !strings.Contains(err.Error(), "/etc/overboot/modules.d/bad: line 1") {
		t.Errorf("bad list: %v", err)
	}
	if n := ModuleFileName("lib/modules/x/kernel/drivers/net/ethernet/realtek/8139too.ko.xz"); n != "8139too" {
		t.Errorf("ModuleFileName = %q", n)
	}
}
