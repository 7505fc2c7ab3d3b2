/*
 * A stand-in bcryptprimitives.dll for Wine 8.0 (Debian 12), which lacks it:
 * Go's Windows runtime (1.24 and later) takes its random bytes from
 * ProcessPrng in that DLL and stops before main without it. This one fills
 * the buffer from RtlGenRandom (advapi32's SystemFunction036), which Wine
 * has. Test scaffolding for TestWindowsUnderWine only; never shipped.
 *
 *   x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll processprng.c -ladvapi32
 */
#include <windows.h>
#include <ntsecapi.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
	while (len > 0) {
		ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;
		if (!RtlGenRandom(data, n))
			return FALSE;
		data += n;
		len -= n;
	}
	return TRUE;
}
