package appliance

import (
	"os"
	"path/filepath"

	"golang.org/x/sys/windows"
)

// defaultDataDir is data_dir's default on Windows: under %ProgramData%, so
// that the service (whose working directory is System32) and an
// interactive `infergate run` use the same data.
func defaultDataDir() string { return filepath.Join(WindowsHome(), "data") }

// WindowsHome is %ProgramData%\infergate: the service's working directory,
// with its infergate.yaml, log and data dir.
func WindowsHome() string {
	pd := os.Getenv("ProgramData")
	if pd == "" {
		pd = `C:\ProgramData`
	}
	return filepath.Join(pd, "infergate")
}

// restrictDataDir gives a new data dir a protected DACL, inherited by
// everything created in it: full control for SYSTEM (the service),
// Administrators and the user running infergate, nobody else. Windows
// ignores the 0600/0750 modes Go passes, and %ProgramData%'s inherited ACL
// lets local users read files created under it, the admin token included.
// The CLI then needs an elevated prompt (or the same user) to read the
// token, as it needs sudo on Linux.
func restrictDataDir(dir string) error {
	u, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		return err
	}
	sd, err := windows.SecurityDescriptorFromString("D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FA;;;" + u.User.Sid.String() + ")")
	if err != nil {
		return err
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return err
	}
	return windows.SetNamedSecurityInfo(dir, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil)
}
