# SPDX-License-Identifier: Apache-2.0
"""Runs the browser tests with unittest and ends with one line `browser tests: N passed, N failed, N skipped`."""

import sys
import time
import unittest


def main(arguments):
    loader = unittest.TestLoader()
    suite = loader.loadTestsFromNames(arguments) if arguments else loader.discover(".", pattern="test_*.py")
    started = time.monotonic()
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped
    print(f"browser tests: {passed} passed, {failed} failed, {skipped} skipped ({time.monotonic() - started:.1f} s)")
    return 0 if failed == 0 and result.testsRun > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
