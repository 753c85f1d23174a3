@_exported import NurtureCore
