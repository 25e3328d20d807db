# Sign Windows executables with the code-signing certificate from CI secrets (Authenticode,
# SHA-256, RFC 3161 timestamp). Usage: sign.ps1 FILE...; does nothing without the secret, so
# forks and local builds produce unsigned but otherwise identical installers.
param([Parameter(Mandatory = $true, ValueFromRemainingArguments = $true)][string[]]$Files)
$ErrorActionPreference = "Stop"
if (-not $env:WINDOWS_CERT_PFX_BASE64) { Write-Host "no certificate: not signing"; exit 0 }
$pfx = Join-Path $env:RUNNER_TEMP "cert.pfx"
try {
    [IO.File]::WriteAllBytes($pfx, [Convert]::FromBase64String($env:WINDOWS_CERT_PFX_BASE64))
    $signtool = Get-ChildItem "C:\Program Files (x86)\Windows Kits\10\bin\*\x64\signtool.exe" |
        Sort-Object FullName | Select-Object -Last 1
    & $signtool.FullName sign /f $pfx /p $env:WINDOWS_CERT_PASSWORD /fd sha256 `
        /tr http://timestamp.digicert.com /td sha256 @Files
    if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
} finally {
    Remove-Item -Force -ErrorAction SilentlyContinue $pfx
}
