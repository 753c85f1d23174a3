import Testing
@Suite struct WorkflowPlaceholderTests { @Test func builds() {} }
