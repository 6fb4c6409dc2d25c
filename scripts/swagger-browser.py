#!/usr/bin/env python3
"""Swagger UI in a real browser against a vkv started with --auth-tokens.

Opens BASE_URL/docs in headless Chromium (no token: the page, its assets
and /openapi.json must load), runs GET /keys from the page (401: the page
sent no token), enters TOKEN (scope write) through the Authorize button,
runs it again (200: the page sent the token), then a put from the page
(200: the cross-site defences let the page's own JSON writes through).
Exit 0 when all of that holds.

Usage: scripts/swagger-browser.py BASE_URL TOKEN
Needs: Debian's chromium and chromium-driver (apt-get install -y chromium
chromium-driver) and Selenium (pip install selenium, in a venv). Not part
of CI (the browser is a large download); run it when /docs or the
OpenAPI security declarations change.
"""
import sys

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait


def main(base, token):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    service = webdriver.ChromeService(executable_path="/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    wait = WebDriverWait(driver, 30)
    try:
        driver.get(base + "/docs")
        # The operation list renders only once /openapi.json has loaded.
        op = wait.until(ec.presence_of_element_located((By.ID, "operations-listing-keys")))
        op.find_element(By.CSS_SELECTOR, ".opblock-summary-control").click()
        wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#operations-listing-keys .try-out__btn"))).click()

        def execute(op="#operations-listing-keys"):
            button = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, op + " .execute")))
            button.click()
            cell = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR,
                op + " .live-responses-table tr.response .response-col_status")))
            status = cell.text.strip().split()[0]
            if not status.startswith("2"):
                answer = driver.find_element(By.CSS_SELECTOR,
                    op + " .live-responses-table tr.response .response-col_description")
                print("swagger-browser: %s answered %s: %s" % (op, status, answer.text[:300]))
            # Clear, so the next run's answer is a fresh element.
            driver.find_element(By.CSS_SELECTOR, op + " .btn-clear").click()
            wait.until(ec.invisibility_of_element_located((By.CSS_SELECTOR,
                op + " .live-responses-table")))
            return status

        without = execute()
        assert without == "401", "without Authorize: %s, want 401" % without

        driver.find_element(By.CSS_SELECTOR, ".auth-wrapper .authorize").click()
        field = wait.until(ec.visibility_of_element_located(
            (By.CSS_SELECTOR, ".modal-ux .auth-container input")))
        field.send_keys(token)
        driver.find_element(By.CSS_SELECTOR, ".modal-ux .auth-btn-wrapper .authorize").click()
        driver.find_element(By.CSS_SELECTOR, ".modal-ux .btn-done").click()

        with_token = execute()
        assert with_token == "200", "after Authorize: %s, want 200" % with_token

        # A write from the page: JSON from the same origin, so the
        # cross-site defences let it through (the token needs write).
        put = "#operations-kv-put"
        driver.find_element(By.CSS_SELECTOR, put + " .opblock-summary-control").click()
        wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, put + " .try-out__btn"))).click()
        key = wait.until(ec.visibility_of_element_located(
            (By.CSS_SELECTOR, put + " tr[data-param-name='key'] input")))
        key.send_keys("from-swagger-ui")
        body = driver.find_element(By.CSS_SELECTOR, put + " textarea.body-param__text")
        # React owns the field: select all and type over it (clear() would
        # not reach React's state).
        body.send_keys(Keys.CONTROL, "a")
        body.send_keys(Keys.DELETE)
        body.send_keys('{"value": {"written": "by Swagger UI"}}')
        written = execute(put)
        assert written == "200", "PUT from the page: %s, want 200" % written
        print("swagger-browser: /docs opened without a token; GET /keys from the page: "
              "401 before Authorize, 200 after; POST /put/{key} from the page: 200")
    finally:
        driver.quit()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1].rstrip("/"), sys.argv[2])
