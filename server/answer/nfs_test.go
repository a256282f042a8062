package answer_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/answer"
	"github.com/overboot/overboot/server/config"
)

// TestDocumentNFS: a profile with root = nfs://... gets a document whose
// lower is the NFS export with lower-nfs's options, and no image URL,
// digest or tree, whatever Root says.
func TestDocumentNFS(t *testing.T) {
	c, err := config.Parse("golden.conf", strings.NewReader("[profile nfs]\nkernel = k\ninitramfs = i\nroot = nfs://192.0.2.1/srv/roots/debian\nlower-nfs = vers=3,mountport=20048\nupper-size = 1G\n"))
	if err != nil {
		t.Fatal(err)
	}
	f := answer.DocumentFacts{Base: base, Profile: c.Profiles["nfs"], Machine: answer.Machine{MAC: "52:54:00:12:34:56"},
		Identity: &boot.Identity{Hostname: "lab-01", MachineID: strings.Repeat("0f", 16)}, ReportToken: token}
	doc, err := answer.Document(f)
	if err != nil {
		t.Fatal(err)
	}
	if doc.Lower.HTTP != nil || doc.Lower.NFS == nil {
		t.Fatalf("lower %+v: want the NFS export alone", doc.Lower)
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "document-nfs", string(b)+"\n")
	if _, err := boot.ParseDocument(strings.NewReader(string(b))); err != nil {
		t.Fatalf("the agent refuses it: %v", err)
	}
}
