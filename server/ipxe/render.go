package ipxe

import (
	"fmt"

	"github.com/overboot/overboot/server/answer"
)

// Render is an answer as an iPXE script.
func Render(a answer.Answer) (string, error) {
	switch a := a.(type) {
	case answer.Kernel:
		return KernelScript{Comment: a.Comment, Kernel: a.Kernel, Initrds: a.Initrds, KernelMirrors: a.KernelMirrors, InitrdMirrors: a.InitrdMirrors, Args: a.Args, ForgetLogin: a.ForgetLogin}.Render()
	case answer.Menu:
		m := MenuScript{Title: a.Title, LoginURL: a.LoginURL, Default: a.Default, Timeout: a.Timeout}
		for _, it := range a.Items {
			m.Items = append(m.Items, MenuItem{Key: it.Key, Label: it.Label, URL: it.URL})
		}
		return m.Render()
	case answer.Wait:
		return AgainScript{Server: a.Server, Message: a.Message, Notice: a.Notice, Wait: a.Wait}.Render()
	case answer.Refusal:
		return FailScript(a.Message), nil
	case answer.SanChain:
		return ChainOnceScript{Comment: a.Comment, URL: a.URL}.Render()
	case answer.San:
		return SANScript{Comment: a.Comment, Portal: a.Portal, Target: a.Target, Initiator: a.Initiator, CHAP: a.CHAP}.Render()
	case answer.Bootstrap:
		return ChainScript{Server: a.Server}.Render()
	}
	return "", fmt.Errorf("ipxe: no rendering for %T", a)
}
