"""The officers' pages in headless Chromium (selenium); screenshots go to the test's tmp dir."""
