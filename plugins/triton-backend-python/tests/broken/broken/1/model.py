import no_such_module_for_the_test  # noqa: F401


class TritonPythonModel:
    def execute(self, requests):
        return []
