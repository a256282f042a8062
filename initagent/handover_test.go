package initagent

import (
	"strings"
	"testing"
)

func TestHandOverFiles(t *testing.T) {
	files, err := HandOverFiles("eth0", "52:54:00:12:34:56", false)
	if err != nil {
		t.Fatal(err)
	}
	link := files["/run/systemd/network/10-overboot-eth0.link"]
	for _, want := range []string{"OriginalName=eth0", "MACAddress=52:54:00:12:34:56", "NamePolicy=\n", "Name=eth0"} {
		if !strings.Contains(link, want) {
			t.Errorf(".link lacks %q:\n%s", want, link)
		}
	}
	if len(files) != 1 {
		t.Errorf("without keep: %d files, want only the .link", len(files))
	}
	files, err = HandOverFiles("enp0s3", "52:54:00:12:34:56", true)
	if err != nil {
		t.Fatal(err)
	}
	if n := files["/run/systemd/network/10-overboot-enp0s3.network"]; !strings.Contains(n, "KeepConfiguration=yes") || !strings.Contains(n, "Name=enp0s3") {
		t.Errorf(".network:\n%s", n)
	}
	if nm := files["/run/NetworkManager/conf.d/10-overboot.conf"]; !strings.Contains(nm, "unmanaged-devices=interface-name:enp0s3") {
		t.Errorf("NetworkManager:\n%s", nm)
	}
	for _, bad := range []string{"", "../x", "a b", "x\nName=evil"} {
		if _, err := HandOverFiles(bad, "", true); err == nil {
			t.Errorf("interface %q accepted", bad)
		}
	}
	if _, err := HandOverFiles("eth0", "00:11\n[Link]", true); err == nil {
		t.Error("hardware address with a newline accepted")
	}
}
