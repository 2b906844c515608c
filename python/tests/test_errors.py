import subprocess
import sys
import textwrap

import pytest

import cxrlearn


def test_a_panic_reaches_python_as_cxr_error_not_panic_exception():
    with pytest.raises(cxrlearn.CxrError, match="internal error.*deliberate panic"):
        cxrlearn._native._panic_for_test()


def test_a_libtorch_exception_reaches_python_as_cxr_error_with_its_message():
    with pytest.raises(cxrlearn.CxrError, match=r"libtorch: mat1 and mat2 shapes cannot be multiplied \(2x3 and 4x5\)$"):
        cxrlearn._native._torch_error_for_test()


def test_cxr_error_is_an_exception():
    assert issubclass(cxrlearn.CxrError, Exception)


def test_import_with_another_torch_names_the_version_needed(tmp_path):
    fake = tmp_path / "torch"
    fake.mkdir()
    (fake / "__init__.py").write_text('__version__ = "2.12.1+cpu"\n')
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        try:
            import cxrlearn
        except ImportError as e:
            print(e)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "cxrlearn needs torch==2.13.0" in out.stdout
    assert "this environment has torch 2.12.1+cpu" in out.stdout
